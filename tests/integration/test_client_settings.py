"""dfly.Client(config=..., **settings): what is given beside a config goes over it,
as a flag goes over a config file, and is refused as it is without a config."""
import pytest
from helpers import content

from dfly import errors
from dfly.client import Client
from dfly.peer.config import PeerConfig


def _config(tmp_path, **fields) -> PeerConfig:
    return PeerConfig(data_dir=str(tmp_path / "peer"), upload_listen="127.0.0.1:0", seed_for_s=0,
                      **fields)


def test_supernodes_and_settings_given_beside_a_config_go_over_it(tmp_path, origin, supernode, downloads):
    src = origin.add("f.bin", content(300_000, seed=5))
    config = _config(tmp_path, parallel=2, timeout_s=30.0)
    with Client([supernode.address], config=config, no_back_source=True, rate_limit="20M") as client:
        result = client.download(src.url, str(downloads / "f.bin"))
        assert (client.config.supernode, client.config.no_back_source) == ([supernode.address], True)
        assert (client.config.rate_limit, client.config.parallel) == (20 << 20, 2)   # the rest kept
    assert result.via == "p2p" and result.bytes_from_supernode == len(src.data)
    assert (downloads / "f.bin").read_bytes() == src.data


def test_no_back_source_given_beside_a_config_keeps_the_download_off_the_source(tmp_path, origin,
                                                                               downloads):
    src = origin.add("f.bin", content(1000, seed=6))
    with Client(config=_config(tmp_path), no_back_source=True) as client:
        with pytest.raises(errors.P2PUnavailable):
            client.download(src.url, str(downloads / "f.bin"))
    assert origin.arrived("f.bin") == 0 and not (downloads / "f.bin").exists()


def test_data_dir_given_beside_a_config_goes_over_it(tmp_path):
    with Client(data_dir=str(tmp_path / "mine"), config=_config(tmp_path)) as client:
        assert client.data_dir == str(tmp_path / "mine")


@pytest.mark.parametrize("settings, message", [
    ({"paralel": 4}, "unknown setting 'paralel'"),
    ({"parallel": "many"}, "bad value for --parallel"),
    ({"rate_limit": "fast"}, "bad value for --rate-limit"),
])
def test_a_bad_setting_beside_a_config_is_refused_as_without_one(tmp_path, settings, message):
    for config in (None, _config(tmp_path)):
        with pytest.raises(ValueError, match=message):
            Client(config=config, data_dir=str(tmp_path / "peer"), **settings)
