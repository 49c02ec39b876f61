"""The supernode's /dashboard in a real headless Chromium, over a running swarm of
the built zipapp: the page shows the task and its peers, and their progress moves
without a reload.

Chromium reaches nothing but loopback: every host name resolves to nothing
except 127.0.0.1, and its background services (updates, sync, translation,
...) are off. One browser serves the module. DFLY_DASHBOARD_SCREENSHOT=PATH
saves a screenshot of the running swarm there (docs/dashboard.png is made so).
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest
from helpers import MiB, content, wait_until
from processes import Process

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
NO_NETWORK = ["--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-default-apps", "--no-default-browser-check",
              "--disable-features=Translate,OptimizationHints,MediaRouter",
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM   # given, so Selenium looks nothing up online
    for flag in NO_NETWORK + ["--headless=new", "--no-sandbox", "--disable-gpu",
                              "--disable-dev-shm-usage", "--window-size=1400,1000",
                              "--user-data-dir=%s" % tmp_path_factory.mktemp("chromium")]:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _peer_progress(driver) -> dict:
    """peer id -> its progress as the page shows it."""
    return driver.execute_script(
        "const out={};for(const tr of document.querySelectorAll('#peers tr'))"
        "out[tr.dataset.peer]=tr.querySelector('td.progress').textContent;return out;")


def _get(pyz, url, output, data_dir):
    # Slowed so the swarm lasts some seconds: 12 MiB at 1.5 MB/s each.
    return subprocess.Popen([sys.executable, pyz, "get", url, "-o", output, "--no-daemon",
                             "--supernode", data_dir[0], "--data-dir", data_dir[1],
                             "--upload-listen", "127.0.0.1:0", "--rate-limit", "1500K",
                             "--seed-for", "0", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.time_limit(120)
def test_dashboard_shows_a_running_swarm_and_updates_without_a_reload(browser, pyz, origin,
                                                                      tmp_path):
    src = origin.add("swarm.bin", content(12 * MiB, seed=3))
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0",
                        "--data-dir", str(tmp_path / "sn"))
    gets = []
    try:
        browser.get("http://%s/dashboard" % supernode.address)
        browser.execute_script("window.dflyNotReloaded = true;")
        gets = [_get(pyz, src.url, str(tmp_path / ("out%d" % i)),
                     (supernode.address, str(tmp_path / ("peer%d" % i)))) for i in range(4)]
        seen = wait_until(lambda: (lambda p: p if len(p) == 4 else None)(_peer_progress(browser)),
                          timeout=60, interval=0.2, message="the page lists the four peers")
        rows = browser.execute_script("return document.querySelectorAll('#tasks tr').length")
        assert rows == 1
        # Read in one script: the page redraws the table each update, so an element found
        # first and read after may already be gone (Selenium's stale element).
        assert browser.execute_script(
            "return document.querySelector('#tasks tr td:nth-child(2)').textContent") == src.url
        wait_until(lambda: _peer_progress(browser) != seen and not all(
            v == "100%" for v in _peer_progress(browser).values()), timeout=60, interval=0.2,
            message="the peers' progress moves on the page")
        wait_until(lambda: any(v != "100%" and int(v[:-1]) >= 40 for v in _peer_progress(browser).values()),
                   timeout=60, interval=0.2, message="a peer is half way")
        shot = os.environ.get("DFLY_DASHBOARD_SCREENSHOT") or str(tmp_path / "dashboard.png")
        browser.save_screenshot(shot)
        for get in gets:
            assert get.wait(90) == 0, get.stderr.read()
        assert browser.execute_script("return window.dflyNotReloaded === true")
        assert "not updated" not in browser.find_element("id", "status").text
    finally:
        for get in gets:
            if get.poll() is None:
                get.kill()
                get.wait(10)
        supernode.stop()


@pytest.mark.time_limit(60)
def test_daemon_dashboard_loads_and_updates_in_the_browser(browser, pyz, tmp_path):
    daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                     "--registry-mirror", "", "--data-dir", str(tmp_path / "d"))
    try:
        browser.get("http://%s/dashboard" % daemon.address)
        status = browser.find_element("id", "status")
        first = wait_until(lambda: "updated" in status.text and status.text, timeout=30, interval=0.2,
                           message="the daemon's page drew its feed")
        assert "not updated" not in first
        assert browser.find_element("id", "me").text   # its peer id
        assert "0 B of" in browser.find_element("id", "cache-sum").text
    finally:
        daemon.stop()


def test_zipapp_serves_the_dashboard_page_and_feed(pyz, tmp_path):
    """Without a browser too: the page is packed in the archive and served from it."""
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"))
    try:
        base = "http://%s" % supernode.address
        with urllib.request.urlopen(base + "/dashboard", timeout=10) as reply:
            page = reply.read().decode()
        assert reply.headers["Content-Type"].startswith("text/html") and "/v1/dashboard" in page
        with urllib.request.urlopen(base + "/v1/dashboard", timeout=10) as reply:
            assert json.loads(reply.read())["tasks"] == []
    finally:
        supernode.stop()
