"""The operator page in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium)
while the site demo runs (config/site.yaml: two cameras, the detector, 16 nodes in two containers).

The page loads with no console errors; it draws the site's 16 nodes; rates on the edges update;
the events feed grows; the run report's three plots are drawn live; the latest annotated frame of
cam0 is shown, 320 pixels wide; a parameter override set on the page (token typed into the page)
shows up through the node's parameter service, as `ros2 param get` reads it; an invalid graph
pasted on the page shows the validator's lines and changes nothing. Screenshots go to the test's
tmp folder (their paths are printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import asset, missing_reason
from schnitzel_stream_ros.testing.ros_peer import RosPeer
from schnitzel_stream_ros.testing.rtsp_server import unavailable_reason

CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
SITE_GRAPH = Path(__file__).resolve().parents[2] / 'config' / 'site.yaml'

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(420),
    pytest.mark.skipif(asset('vtest_h264.mp4') is None, reason=missing_reason('vtest_h264.mp4')),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason='Debian chromium + chromium-driver not installed (scripts/install-system-deps installs them)',
    ),
]


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--window-size=1500,1300',
        '--no-first-run',
        '--disable-extensions',
    ):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(predicate, timeout: float, what: str, demo) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert demo.poll() is None, 'the demo ended early'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.25)


def _console_errors(driver) -> list[str]:
    return [e['message'] for e in driver.get_log('browser') if e['level'] == 'SEVERE']


def test_operator_page_in_a_real_browser_while_the_site_demo_runs(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out = tmp_path / 'demo'
    log = tmp_path / 'demo.txt'
    with log.open('w') as err:
        demo = processes.start(
            processes.python_cmd(
                '-m',
                'schnitzel_stream_ros.demo.site_demo',
                '--duration',
                '150',
                '--out',
                str(out),
                '--control-port',
                '0',
                '--no-lanes',
            ),
            os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    driver = None
    peer = None
    try:
        page = _wait(
            lambda: re.search(r'operator page (http://127\.0\.0\.1:\d+/)', log.read_text()),
            60,
            'the page address on the demo output',
            demo,
        ).group(1)
        domain = int(re.search(r'ROS_DOMAIN_ID=(\d+)', log.read_text()).group(1))

        def running() -> bool:
            try:
                with urllib.request.urlopen(page + 'api/metrics', timeout=5) as answer:
                    return json.load(answer)['nodes'].get('cam0', {}).get('produced', 0) > 0
            except OSError:
                return False

        _wait(running, 120, 'frames from cam0', demo)
        token = (out / 'control' / 'token').read_text().strip()
        driver = _browser()
        driver.get(page)

        # the site's 16 nodes, drawn
        nodes = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '#graph g.node'), 30, 'the graph', demo)
        site_ids = re.findall(r'^  - id: (\w+)', SITE_GRAPH.read_text(), re.MULTILINE)
        assert len(site_ids) == 16
        assert sorted(n.get_attribute('data-node') for n in nodes) == sorted(site_ids)

        # rates update on the edges, health colours arrive
        def rate(label: str) -> str:
            return driver.find_element(By.CSS_SELECTOR, f'#graph g.edge[data-edge="{label}"] text.rate').text

        first = _wait(lambda: rate('cam0.out->det0.in'), 30, 'a rate on cam0 -> det0', demo)
        stamp = driver.find_element(By.ID, 'stream-state').text
        _wait(lambda: driver.find_element(By.ID, 'stream-state').text != stamp, 10, 'the next push', demo)
        assert float(first.rstrip('/s')) >= 0
        _wait(lambda: float(rate('cam0.out->det0.in').rstrip('/s')) > 0, 30, 'a non-zero camera rate', demo)
        _wait(
            lambda: (
                'level-unknown'
                not in driver.find_element(By.CSS_SELECTOR, '#graph g.node[data-node="cam0"]').get_attribute(
                    'class'
                )
            ),
            30,
            'a health colour on cam0',
            demo,
        )

        # the events feed grows while the demo runs
        _wait(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, '#events li')) >= 1, 90, 'a first event', demo
        )
        seen = len(driver.find_elements(By.CSS_SELECTOR, '#events li'))
        _wait(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, '#events li')) > seen, 90, 'more events', demo
        )
        # the run report's plots, live: something drawn on each of the three charts
        inked = (
            'const c = document.getElementById(arguments[0]);'
            'const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;'
            'let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;'
        )
        for canvas in ('plot-sources', 'plot-fed', 'plot-latency'):
            _wait(lambda c=canvas: driver.execute_script(inked, c) > 2000, 30, f'lines on {canvas}', demo)
        # the latest annotated frame of cam0, small
        shown = (
            "const i = document.querySelector('#cameras figure[data-camera=\"cam0\"] img');"
            'return i !== null && i.complete && i.naturalWidth;'
        )
        _wait(lambda: driver.execute_script(shown) == 320, 30, 'the annotated frame of cam0', demo)
        with urllib.request.urlopen(page + 'api/cameras/cam0/frame.jpg', timeout=10) as answer:
            jpeg = answer.read()
        import cv2
        import numpy as np

        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape[1] == 320 and len(jpeg) < 100_000
        driver.save_screenshot(str(tmp_path / 'page-live.png'))

        # a parameter override on the page shows up through the node's parameter service
        driver.find_element(By.ID, 'token').send_keys(token)
        Select(driver.find_element(By.ID, 'param-node')).select_by_value('dedup')
        _wait(
            lambda: [
                o
                for o in driver.find_elements(By.CSS_SELECTOR, '#param-name option')
                if o.get_attribute('value') == 'cooldown_sec'
            ],
            20,
            'the parameters of dedup',
            demo,
        )
        Select(driver.find_element(By.ID, 'param-name')).select_by_value('cooldown_sec')
        driver.find_element(By.ID, 'param-value').send_keys('4.5')
        driver.find_element(By.ID, 'param-set').click()
        _wait(lambda: 'is now 4.5' in driver.find_element(By.ID, 'param-result').text, 20, 'the answer', demo)
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        peer = RosPeer(domain, 'page_test_peer')
        answer = peer.call(
            GetParameters, '/site/dedup/get_parameters', GetParameters.Request(names=['cooldown_sec'])
        )
        assert parameter_value_to_python(answer.values[0]) == 4.5

        # an invalid graph pasted on the page: validator lines, nothing changed
        bad = (
            SITE_GRAPH.read_text()
            .replace('plugin: DedupPolicyNode', 'plugin: NoSuchPolicy')
            .replace('cooldown_sec: 10.0', 'cooldown_sec: -3')
        )
        area = driver.find_element(By.ID, 'graph-text')
        driver.execute_script('arguments[0].value = arguments[1];', area, bad)
        driver.find_element(By.ID, 'graph-validate').click()
        lines = _wait(
            lambda: driver.find_elements(By.CSS_SELECTOR, '#validator-lines li'), 30, 'validator lines', demo
        )
        texts = [li.text for li in lines]
        assert any('NoSuchPolicy' in t for t in texts) and all(t.startswith('page:') for t in texts), texts
        assert _console_errors(driver) == []  # everything so far: no error in the console
        driver.find_element(By.ID, 'graph-apply').click()
        _wait(lambda: 'invalid' in driver.find_element(By.ID, 'apply-state').text, 30, 'the refusal', demo)
        driver.save_screenshot(str(tmp_path / 'page-invalid-graph.png'))
        with urllib.request.urlopen(page + 'api/graph', timeout=10) as answer:
            assert len(json.load(answer)['nodes']) == 16
        answer = peer.call(
            GetParameters, '/site/dedup/get_parameters', GetParameters.Request(names=['cooldown_sec'])
        )
        assert parameter_value_to_python(answer.values[0]) == 4.5  # the refused graph changed nothing

        # the refused apply: Chromium logs the 422 answer itself as a failed resource, and nothing else
        errors = _console_errors(driver)
        assert all('/api/graph/apply' in e and '422' in e for e in errors), errors
        audit = (out / 'control' / 'audit.jsonl').read_text()
        assert token not in audit and '"path":"/api/nodes/dedup/params/cooldown_sec"' in audit
        print(f'screenshots: {tmp_path / "page-live.png"} {tmp_path / "page-invalid-graph.png"}')
    finally:
        if driver is not None:
            driver.quit()
        if peer is not None:
            peer.close()
        processes.stop(demo, signal.SIGINT, timeout=60)
        processes.stop(demo)
    assert token not in log.read_text()
