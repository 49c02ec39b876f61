"""A node's labels become region/zone/rack: as far as they go without a gap, each a
label --location can hold (nodelocation.location_of is pure)."""
import pytest

from dfly.nodelocation import location_of

REGION, ZONE = "topology.kubernetes.io/region", "topology.kubernetes.io/zone"


def test_region_zone_and_the_named_rack_label_make_the_location():
    labels = {REGION: "us-east-1", ZONE: "us-east-1b", "example.com/rack": "r12"}
    assert location_of(labels, "example.com/rack") == "us-east-1/us-east-1b/r12"
    assert location_of(labels) == "us-east-1/us-east-1b"   # no rack label named


def test_a_missing_label_ends_the_location_there_so_it_stays_a_prefix():
    assert location_of({REGION: "eu", "example.com/rack": "r1"}, "example.com/rack") == "eu"
    assert location_of({ZONE: "eu-a", "example.com/rack": "r1"}, "example.com/rack") == ""
    assert location_of({}) == ""


def test_a_label_value_no_location_can_hold_is_a_clear_error():
    with pytest.raises(ValueError, match="the node's labels make no location"):
        location_of({REGION: "x" * 40})
