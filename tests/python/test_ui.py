"""The built-in web view (/ui/) in a real headless Chromium, driven by selenium, against the
real agent: live charts, the allocation list, a real cgroup v1 task's memory, the file browser,
live logs, untrusted file content, ACL tokens, and https. Screenshots of every page are saved
under the session's temp directory ("ui-screenshots"); the path is printed."""

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import ALLOC_ID, LOG_TEXT, running_allocd

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoAlertPresentException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    if os.environ.get("CI"):
        raise
    print("SKIPPED test_ui: selenium is not installed (pip install -r tests/python/requirements.txt)")
    pytest.skip("selenium is not installed (pip install -r tests/python/requirements.txt)", allow_module_level=True)

HANG_BOUND_S = 30  # generous: only a hang fails, never a slow machine
BUSY_TASK = "busy"
XSS_HTML = '<h1 id="pwned">pwned</h1><script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2">'
MGMT_TOKEN = "00000000-0000-4000-8000-00000000000a"
LOGS_TOKEN = "00000000-0000-4000-8000-00000000000b"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "cpuacct", "cpu,cpuacct", "cpu", "freezer", "pids")


def _missing(reason: str):
    """A real component is missing: a failure under CI, a skip with a printed reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the component must be there)")
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


def _chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        _missing("headless Chromium needs the `chromium` and `chromium-driver` packages")
    return browser, driver


def _new_browser(width=1280, height=900):
    browser, driver = _chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def _write_alloc(alloc_dir: Path, alloc_id: str, task: str, stdout: str) -> Path:
    root = alloc_dir / alloc_id
    for sub in ("alloc/logs", "alloc/data", "alloc/tmp", f"{task}/local", f"{task}/secrets", f"{task}/tmp", f"{task}/private"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / f"alloc/logs/{task}.stdout.0").write_text(stdout)
    (root / f"alloc/logs/{task}.stderr.0").write_text("")
    return root


class CgroupTask:
    """A real cgroup v1 task, as the cgroup plugin finds Nomad's: a sleeping shell holding ~4 MB,
    in `<controller>/nomad/<alloc>.<task>` under every mounted controller. Removed by stop()."""

    def __init__(self, alloc_id: str, task: str):
        self.dirs = []
        for controller in CGROUP_CONTROLLERS:
            base = CGROUP_ROOT / controller
            if base.is_symlink() or not (base / "cgroup.procs").exists():
                continue
            path = base / "nomad" / f"{alloc_id}.{task}"
            path.mkdir(parents=True, exist_ok=True)
            self.dirs.append(path)
        if not any(d.is_relative_to(CGROUP_ROOT / "memory") for d in self.dirs):
            self.stop()
            raise OSError("no cgroup v1 memory controller")
        # Memory is charged to the cgroup it is touched in: the shell fills it after the move.
        script = "sleep 1; x=$(head -c 4000000 /dev/zero | tr '\\0' a); while :; do sleep 1; done"
        self.proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        for path in self.dirs:
            (path / "cgroup.procs").write_text(str(self.proc.pid))

    def stop(self):
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for path in self.dirs:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


@pytest.fixture(scope="module")
def ui_env(tmp_path_factory):
    """An agent over three allocations (one of them a real cgroup v1 task), the real cgroup
    plugin on /sys/fs/cgroup, and a browser. Yields a namespace of what the tests need."""
    _chromium_paths()
    tmp = tmp_path_factory.mktemp("ui")
    alloc_dir = tmp / "alloc"
    busy_id = str(uuid.uuid4())
    other_id = str(uuid.uuid4())
    web = _write_alloc(alloc_dir, ALLOC_ID, "web", LOG_TEXT + "\n")
    (web / "web/local/xss.html").write_text(XSS_HTML)
    (web / "web/local/blob.bin").write_bytes(bytes(range(256)) * 8)
    _write_alloc(alloc_dir, busy_id, BUSY_TASK, "busy started\n")
    _write_alloc(alloc_dir, other_id, "api", "api started\n")
    # Only the cgroup test needs the real task: without it the other pages are still tested.
    task, task_missing = None, None
    try:
        task = CgroupTask(busy_id, BUSY_TASK)
    except OSError as err:
        if os.geteuid() == 0:
            pytest.fail(f"root could not create cgroup v1 task cgroups: {err}")
        task_missing = f"cannot create cgroup v1 task cgroups: {err}"
    config = (
        f'data_dir = "{tmp / "data"}"\n'
        'bind_addr = "127.0.0.1"\n'
        'plugin "host-metrics" {}\n'
        f'plugin "local-disk" {{\n  config {{ alloc_dir = "{alloc_dir}" }}\n}}\n'
        'plugin "cgroup" {}\n'
        'telemetry { collection_interval = "250ms" }\n'
    )
    shots = tmp_path_factory.mktemp("ui-screenshots")
    print(f"UI screenshots: {shots}")
    browser = _new_browser()
    try:
        with running_allocd(tmp, config) as base:
            yield type("UiEnv", (), dict(
                base=base, browser=browser, shots=shots, alloc_dir=alloc_dir,
                ids=[ALLOC_ID, busy_id, other_id], busy_id=busy_id, task_missing=task_missing,
            ))
    finally:
        browser.quit()
        if task is not None:
            task.stop()


def _wait(browser, condition, what):
    # An element found a moment ago may be replaced by the page's next render before its text is
    # read: that is a reason to look again, not a failure.
    retry_on = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(browser, HANG_BOUND_S, poll_frequency=0.1, ignored_exceptions=retry_on)
    return wait.until(lambda b: condition(b), message=what)


def _open(env, fragment):
    env.browser.get(f"{env.base}/ui/#{fragment}")


def _shot(env, name):
    path = env.shots / f"{name}.png"
    env.browser.save_screenshot(str(path))
    return path


def _no_alert(browser):
    try:
        text = browser.switch_to.alert.text
    except NoAlertPresentException:
        return True
    pytest.fail(f"an alert fired: {text}")


def test_root_redirects_to_the_ui(ui_env):
    response = requests.get(f"{ui_env.base}/?a=b", allow_redirects=False, timeout=10)
    assert (response.status_code, response.headers["Location"]) == (307, "/ui/?a=b")
    page = requests.get(f"{ui_env.base}/ui/", timeout=10)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_node_page_charts_gain_points_every_second(ui_env):
    browser = ui_env.browser
    _open(ui_env, "/node")
    chart = "#cpu-charts svg"
    first = _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, chart).get_attribute("data-points") or 0) >= 1 and
                  int(b.find_element(By.CSS_SELECTOR, chart).get_attribute("data-points")), "a first CPU point")
    # Points keep coming, one a second: three more arrive (well within the hang bound).
    _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, chart).get_attribute("data-points")) >= first + 3,
          "three more CPU points")
    polyline = browser.find_element(By.CSS_SELECTOR, f"{chart} polyline").get_attribute("points")
    assert len(polyline.split()) >= first + 3
    cores = browser.find_elements(By.CSS_SELECTOR, "#cpu-charts figure")
    stats = requests.get(f"{ui_env.base}/v1/client/stats", timeout=10).json()
    assert len(cores) == len(stats["CPU"]), "one chart per core"
    summary = browser.find_element(By.CSS_SELECTOR, ".summary").text
    assert "Uptime" in summary and "Memory" in summary
    _shot(ui_env, "node")


def test_allocations_list_shows_every_allocation_and_filters(ui_env):
    browser = ui_env.browser
    _open(ui_env, "/allocations")
    listed = lambda b: {row.get_attribute("data-alloc") for row in b.find_elements(By.CSS_SELECTOR, "#allocations tbody tr")}
    _wait(browser, lambda b: listed(b) == set(ui_env.ids), "every allocation listed")
    if not ui_env.task_missing:
        _wait(browser, lambda b: "running" in b.find_element(By.CSS_SELECTOR, f'tr[data-alloc="{ui_env.busy_id}"]').text,
              "the cgroup task's allocation listed as running")
    _shot(ui_env, "allocations")
    box = browser.find_element(By.ID, "alloc-filter")
    box.send_keys(BUSY_TASK)
    _wait(browser, lambda b: listed(b) == {ui_env.busy_id}, "only the busy allocation after filtering by task")
    _shot(ui_env, "allocations-filtered")
    box.clear()
    box.send_keys(ALLOC_ID[:8])
    _wait(browser, lambda b: listed(b) == {ALLOC_ID}, "only the web allocation after filtering by ID")
    box.send_keys(Keys.BACKSPACE * 8, "no-such-allocation")
    _wait(browser, lambda b: listed(b) == set(), "nothing after a filter matching nothing")


def test_allocation_page_shows_a_real_cgroup_tasks_memory(ui_env):
    if ui_env.task_missing:
        _missing(ui_env.task_missing)
    browser = ui_env.browser
    _open(ui_env, f"/alloc/{ui_env.busy_id}")
    memory = f'.mem-now[data-task="{BUSY_TASK}"]'
    # The shell holds ~4 MB in its cgroup: the page shows at least 1 MB charged.
    _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, memory).get_attribute("data-bytes") or 0) > 1_000_000,
          "the busy task's charged memory")
    card = browser.find_element(By.CSS_SELECTOR, f'section.task-card[data-task="{BUSY_TASK}"]')
    assert "running" in card.text
    assert "MiB" in browser.find_element(By.CSS_SELECTOR, memory).text
    links = {a.text: a.get_attribute("href") for a in card.find_elements(By.TAG_NAME, "a")}
    assert links["stdout"].endswith(f"/logs/{BUSY_TASK}/stdout") and links["files"].endswith(f"/fs/{BUSY_TASK}")
    _wait(browser, lambda b: int(card.find_element(By.CSS_SELECTOR, "svg").get_attribute("data-points")) >= 3, "task chart points")
    _shot(ui_env, "allocation")


def test_file_browser_navigates_into_alloc_logs(ui_env):
    browser = ui_env.browser
    _open(ui_env, f"/alloc/{ALLOC_ID}/fs/")
    for name in ("alloc/", "logs/", "web.stdout.0"):
        link = _wait(browser, lambda b: next((a for a in b.find_elements(By.CSS_SELECTOR, "#files a") if a.text == name), None),
                     f"the {name} link")
        if name == "web.stdout.0":
            _shot(ui_env, "files-alloc-logs")
        link.click()
    _wait(browser, lambda b: b.find_element(By.ID, "file-text").text == LOG_TEXT, "the log file's text")
    _shot(ui_env, "file-text")


def test_binary_file_is_offered_for_download(ui_env, tmp_path):
    browser = ui_env.browser
    _open(ui_env, f"/alloc/{ALLOC_ID}/fs/web/local/blob.bin")
    _wait(browser, lambda b: b.find_elements(By.ID, "binary-notice"), "the binary notice")
    assert not browser.find_elements(By.ID, "file-text")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Download").click()
    saved = tmp_path / "blob.bin"
    _wait(browser, lambda b: saved.is_file() and saved.read_bytes() == bytes(range(256)) * 8, "the downloaded file")
    _shot(ui_env, "file-binary")


def test_large_text_file_is_paged_with_readat(ui_env):
    browser = ui_env.browser
    text = "".join(f"line {n:06}\n" for n in range(50_000))  # 600,000 bytes: three pages
    (ui_env.alloc_dir / ALLOC_ID / "web/local/big.txt").write_text(text)
    _open(ui_env, f"/alloc/{ALLOC_ID}/fs/web/local/big.txt")
    shown = lambda b: b.find_element(By.ID, "file-text").get_attribute("textContent")
    page = 256 * 1024
    _wait(browser, lambda b: shown(b) == text[:page], "the first page")
    button = lambda name: next(b for b in browser.find_elements(By.CSS_SELECTOR, ".pager button") if b.text == name)
    button("Next").click()
    _wait(browser, lambda b: shown(b) == text[page:2 * page], "the second page")
    button("Last").click()
    _wait(browser, lambda b: shown(b) == text[2 * page:], "the last page")
    assert f"of {len(text)}" in browser.find_element(By.CSS_SELECTOR, ".toolbar").text
    assert not button("Next").is_enabled()
    _shot(ui_env, "file-paged")


def test_html_file_is_shown_as_text_and_its_script_never_runs(ui_env):
    browser = ui_env.browser
    _open(ui_env, f"/alloc/{ALLOC_ID}/fs/web/local/xss.html")
    _wait(browser, lambda b: b.find_element(By.ID, "file-text").text == XSS_HTML, "the HTML source shown as text")
    time.sleep(1)  # give a script that could run every chance to do so
    _no_alert(browser)
    assert browser.execute_script("return window.__xss === undefined")
    assert not browser.find_elements(By.ID, "pwned"), "the HTML was parsed into the page"
    _shot(ui_env, "file-xss")


def test_log_view_follows_appends_pause_search_rotation_and_megabytes(ui_env):
    browser = ui_env.browser
    logs = ui_env.alloc_dir / ALLOC_ID / "alloc/logs"
    _open(ui_env, f"/alloc/{ALLOC_ID}/logs/web/stdout")
    output = lambda b: b.find_element(By.ID, "log-output").get_attribute("textContent")
    _wait(browser, lambda b: LOG_TEXT in output(b), "the existing log text")

    appended = f"appended line {uuid.uuid4()}"
    with open(logs / "web.stdout.0", "a") as log:
        log.write(appended + "\n")
    _wait(browser, lambda b: appended in output(b), "the appended line in the log view")

    browser.find_element(By.ID, "log-pause").click()
    held = f"held while paused {uuid.uuid4()}"
    with open(logs / "web.stdout.0", "a") as log:
        log.write(held + "\n")
    _wait(browser, lambda b: "waiting" in b.find_element(By.ID, "log-state").text, "the paused view to report waiting text")
    assert held not in output(browser)
    browser.find_element(By.ID, "log-pause").click()
    _wait(browser, lambda b: held in output(b), "the held line after resuming")

    browser.find_element(By.ID, "log-search").send_keys("appended line")
    _wait(browser, lambda b: appended in b.find_element(By.ID, "log-matches").text, "the search result")
    assert "1 matching line" in browser.find_element(By.ID, "log-matches").text
    _shot(ui_env, "logs-search")
    browser.find_element(By.ID, "log-search").clear()
    browser.find_element(By.ID, "log-search").send_keys(Keys.SPACE, Keys.BACKSPACE)

    rotated = f"after rotation {uuid.uuid4()}"
    (logs / "web.stdout.1").write_text(rotated + "\n")
    _wait(browser, lambda b: rotated in output(b), "the line of the rotated-to file")

    # Megabytes at once: the page keeps at most 1 MiB of text, keeps answering, shows the end.
    last = f"last of the flood {uuid.uuid4()}"
    with open(logs / "web.stdout.1", "a") as log:
        line = "x" * 99 + "\n"
        log.write(line * 40_000)  # ~4 MB
        log.write(last + "\n")
    _wait(browser, lambda b: last in output(b), "the end of a 4 MB burst")
    kept = browser.execute_script("return document.getElementById('log-output').textContent.length")
    assert kept <= 1024 * 1024, f"{kept} characters kept"
    # Scrolled to the top, "Jump to end" brings the newest line back into view.
    browser.execute_script("document.querySelector('.log-scroll').scrollTop = 0")
    browser.find_element(By.ID, "log-end").click()
    at_end = "const s = document.querySelector('.log-scroll'); return s.scrollHeight - s.scrollTop - s.clientHeight < 2"
    _wait(browser, lambda b: b.execute_script(at_end), "the view at the end")
    _shot(ui_env, "logs")


def _restartable_log_agent(tmp_path, extra=""):
    """One allocation whose web task logged "line 0 before", a config over it (plus `extra` HCL)
    and a fixed free port, so the agent can be stopped and started again at the same address."""
    alloc_dir = tmp_path / "alloc"
    logs = _write_alloc(alloc_dir, ALLOC_ID, "web", "line 0 before\n") / "alloc/logs"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (
        f'data_dir = "{tmp_path / "data"}"\n'
        'bind_addr = "127.0.0.1"\n'
        'plugin "host-metrics" {}\n'
        f'plugin "local-disk" {{\n  config {{ alloc_dir = "{alloc_dir}" }}\n}}\n'
    ) + extra
    return logs, config, port


def test_log_view_resumes_after_the_agent_restarts_without_losing_or_repeating_a_line(tmp_path):
    """The agent stops mid-follow; lines are written and the log rotates while it is down; once it
    is back on the same address the page resumes where it was: every line exactly once."""
    _chromium_paths()
    logs, config, port = _restartable_log_agent(tmp_path)
    output = lambda b: b.find_element(By.ID, "log-output").get_attribute("textContent")
    state = lambda b: b.find_element(By.ID, "log-state").text
    browser = _new_browser()

    def append_and_see(name, line):
        with open(logs / name, "a") as log:
            log.write(line + "\n")
        _wait(browser, lambda b: line in output(b), f"{line!r} in the log view")

    try:
        with running_allocd(tmp_path, config, port) as base:
            browser.get(f"{base}/ui/#/alloc/{ALLOC_ID}/logs/web/stdout")
            _wait(browser, lambda b: "line 0 before" in output(b), "the log before the restart")
            append_and_see("web.stdout.0", "line 1 followed")
        _wait(browser, lambda b: "reconnecting" in state(b), "the view to say it is reconnecting")
        with open(logs / "web.stdout.0", "a") as log:
            log.write("line 2 while the agent was down\n")
        (logs / "web.stdout.1").write_text("line 3 rotated while the agent was down\n")
        with running_allocd(tmp_path, config, port):
            _wait(browser, lambda b: "line 3 rotated" in output(b), "the lines written while the agent was down")
            append_and_see("web.stdout.1", "line 4 after the restart")
        # Down again, now in the rotated-to file: resuming counts the whole of web.stdout.0 first.
        _wait(browser, lambda b: "reconnecting" in state(b), "the view to say it is reconnecting again")
        with open(logs / "web.stdout.1", "a") as log:
            log.write("line 5 while the agent was down again\n")
        with running_allocd(tmp_path, config, port):
            _wait(browser, lambda b: "line 5 while" in output(b), "the line written during the second outage")
            append_and_see("web.stdout.1", "line 6 after the second restart")
            assert output(browser) == (
                "line 0 before\nline 1 followed\nline 2 while the agent was down\n"
                "line 3 rotated while the agent was down\nline 4 after the restart\n"
                "line 5 while the agent was down again\nline 6 after the second restart\n"
            )
            assert "following" in state(browser)
            assert _no_alert(browser)
    finally:
        browser.quit()


def test_log_view_says_so_when_the_file_it_followed_was_rotated_away_while_reconnecting(tmp_path):
    """While the agent is down the log rotates and the file the view was in is deleted: the view
    resumes at the first file still there and says that lines were lost in between."""
    _chromium_paths()
    logs, config, port = _restartable_log_agent(tmp_path)
    output = lambda b: b.find_element(By.ID, "log-output").get_attribute("textContent")
    browser = _new_browser()
    try:
        with running_allocd(tmp_path, config, port) as base:
            browser.get(f"{base}/ui/#/alloc/{ALLOC_ID}/logs/web/stdout")
            _wait(browser, lambda b: "line 0 before" in output(b), "the log before the restart")
        _wait(browser, lambda b: "reconnecting" in b.find_element(By.ID, "log-state").text, "the view to reconnect")
        with open(logs / "web.stdout.0", "a") as log:
            log.write("line 1 lost with its file\n")
        (logs / "web.stdout.1").write_text("line 2 in the next file\n")
        (logs / "web.stdout.0").unlink()
        with running_allocd(tmp_path, config, port):
            _wait(browser, lambda b: "line 2 in the next file" in output(b), "the file that is still there")
            assert output(browser) == (
                "line 0 before\n"
                "\n[… lines written while the view was reconnecting were rotated away …]\n"
                "line 2 in the next file\n"
            )
            assert "following" in browser.find_element(By.ID, "log-state").text
    finally:
        browser.quit()


def test_log_view_resumes_with_a_token_that_may_read_logs_but_not_list_files(tmp_path):
    """Resuming normally lists alloc/logs (read-fs); a read-logs token is refused that, so the
    view asks for the last megabyte again and drops what it already shows: still every line once."""
    _chromium_paths()
    acl = tmp_path / "acl"
    (acl / "policies").mkdir(parents=True)
    (acl / "policies/logs.hcl").write_text('namespace "default" {\n  capabilities = ["read-logs"]\n}\n')
    (acl / "tokens.hcl").write_text(f'token "logs" {{ secret_id = "{LOGS_TOKEN}" policies = ["logs"] }}\n')
    logs, config, port = _restartable_log_agent(
        tmp_path,
        f'acl {{\n  enabled = true\n  policy_dir = "{acl / "policies"}"\n  token_file = "{acl / "tokens.hcl"}"\n}}\n',
    )
    output = lambda b: b.find_element(By.ID, "log-output").get_attribute("textContent")
    browser = _new_browser()
    try:
        with running_allocd(tmp_path, config, port) as base:
            assert requests.get(f"{base}/v1/client/fs/ls/{ALLOC_ID}?path=alloc/logs",
                                headers={"X-Nomad-Token": LOGS_TOKEN}).status_code == 403
            browser.get(f"{base}/ui/")
            browser.execute_script(f"localStorage.setItem('allocd.token', '{LOGS_TOKEN}')")
            browser.get(f"{base}/ui/#/alloc/{ALLOC_ID}/logs/web/stdout")
            _wait(browser, lambda b: "line 0 before" in output(b), "the log with a read-logs token")
        _wait(browser, lambda b: "reconnecting" in b.find_element(By.ID, "log-state").text, "the view to reconnect")
        with open(logs / "web.stdout.0", "a") as log:
            log.write("line 1 while the agent was down\n")
        with running_allocd(tmp_path, config, port):
            _wait(browser, lambda b: "line 1 while" in output(b), "the line written while the agent was down")
            assert output(browser) == "line 0 before\nline 1 while the agent was down\n"
            assert not browser.find_elements(By.CSS_SELECTOR, "main .error")
    finally:
        browser.quit()


def test_layout_at_phone_width_4k_and_dark(ui_env):
    """Screenshots for a human eye, plus what can be checked: nothing wider than a phone's screen."""
    browser = ui_env.browser
    try:
        browser.set_window_size(390, 844)
        for name, fragment in (("allocations", "/allocations"), ("allocation", f"/alloc/{ui_env.busy_id}"),
                               ("logs", f"/alloc/{ALLOC_ID}/logs/web/stdout")):
            _open(ui_env, fragment)
            _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "main h1"), "the page")
            time.sleep(2)
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= browser.execute_script("return window.innerWidth"), f"{name} scrolls sideways at phone width"
            _shot(ui_env, f"phone-{name}")
        browser.set_window_size(3840, 2160)
        _open(ui_env, "/node")
        _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, "#cpu-charts svg").get_attribute("data-points") or 0) >= 3, "node charts")
        _shot(ui_env, "4k-node")
        browser.set_window_size(1280, 900)
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        _open(ui_env, "/node")
        _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, "#cpu-charts svg").get_attribute("data-points") or 0) >= 3, "charts")
        background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 19, 24)", background
        _shot(ui_env, "dark-node")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.set_window_size(1280, 900)


def test_keyboard_reaches_the_filter_and_follows_links(ui_env):
    browser = ui_env.browser
    _open(ui_env, "/allocations")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#allocations tbody tr"), "the list")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.switch_to.active_element.get_attribute("id") == "alloc-filter"
    browser.switch_to.active_element.send_keys(ALLOC_ID[:8])
    _wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#allocations tbody tr")) == 1, "one row")
    browser.switch_to.active_element.send_keys(Keys.TAB)  # past the count, to the row's link
    focused = browser.switch_to.active_element
    assert focused.tag_name == "a" and ALLOC_ID in focused.get_attribute("href")
    focused.send_keys(Keys.ENTER)
    _wait(browser, lambda b: "Allocation" in b.find_element(By.CSS_SELECTOR, "main h1").text, "the allocation page")


ACL_POLICY = 'namespace "default" {\n  policy = "read"\n}\nnode {\n  policy = "read"\n}\n'


def test_acl_403_without_a_token_and_success_with_one(tmp_path):
    _chromium_paths()
    alloc_dir = tmp_path / "alloc"
    _write_alloc(alloc_dir, ALLOC_ID, "web", LOG_TEXT + "\n")
    acl = tmp_path / "acl"
    (acl / "policies").mkdir(parents=True)
    (acl / "policies/reader.hcl").write_text(ACL_POLICY)
    (acl / "tokens.hcl").write_text(
        f'token "mgmt" {{ secret_id = "{MGMT_TOKEN}" type = "management" policies = [] }}\n')
    config = (
        f'data_dir = "{tmp_path / "data"}"\n'
        'bind_addr = "127.0.0.1"\n'
        'plugin "host-metrics" {}\n'
        f'plugin "local-disk" {{\n  config {{ alloc_dir = "{alloc_dir}" }}\n}}\n'
        f'acl {{\n  enabled = true\n  policy_dir = "{acl / "policies"}"\n  token_file = "{acl / "tokens.hcl"}"\n}}\n'
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"UI screenshots: {shots}")
    browser = _new_browser()
    try:
        with running_allocd(tmp_path, config) as base:
            # The page itself needs no token; the API calls it makes are refused, and it says why.
            browser.get(f"{base}/ui/#/allocations")
            alert = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "main .error"), "the 403 message")[0]
            assert "Permission denied (403)" in alert.text and "ACL token" in alert.text, alert.text
            assert not browser.find_elements(By.CSS_SELECTOR, "#allocations tbody tr")
            browser.save_screenshot(str(shots / "acl-denied.png"))
            browser.find_element(By.ID, "token").send_keys(MGMT_TOKEN)
            browser.find_element(By.ID, "token-save").click()
            _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-alloc="{ALLOC_ID}"]'), "the list with the token")
            assert not browser.find_elements(By.CSS_SELECTOR, "main .error")
            assert browser.execute_script("return localStorage.getItem('allocd.token')") == MGMT_TOKEN
            browser.save_screenshot(str(shots / "acl-allowed.png"))
            # Kept across a reload, and sent with the log stream too.
            browser.get(f"{base}/ui/#/alloc/{ALLOC_ID}/logs/web/stdout")
            _wait(browser, lambda b: LOG_TEXT in b.find_element(By.ID, "log-output").get_attribute("textContent"), "the log with the token")
            browser.find_element(By.ID, "token-clear").click()
            _wait(browser, lambda b: "Permission denied (403)" in b.find_element(By.ID, "main").text, "403 once the token is cleared")
    finally:
        browser.quit()


def test_ui_over_https(tmp_path):
    _chromium_paths()
    if not shutil.which("openssl"):
        _missing("openssl is needed to make a test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp_path, check=True, capture_output=True)
    alloc_dir = tmp_path / "alloc"
    _write_alloc(alloc_dir, ALLOC_ID, "web", LOG_TEXT + "\n")
    config = (
        f'data_dir = "{tmp_path / "data"}"\n'
        'bind_addr = "127.0.0.1"\n'
        'plugin "host-metrics" {}\n'
        f'plugin "local-disk" {{\n  config {{ alloc_dir = "{alloc_dir}" }}\n}}\n'
        f'tls {{\n  http = true\n  cert_file = "{tmp_path / "cert.pem"}"\n  key_file = "{tmp_path / "key.pem"}"\n}}\n'
    )
    browser = _new_browser()
    try:
        with running_allocd(tmp_path, config) as base:
            assert base.startswith("https://"), base
            browser.get(f"{base}/ui/#/alloc/{ALLOC_ID}/fs/alloc/logs/web.stdout.0")
            _wait(browser, lambda b: b.find_element(By.ID, "file-text").text == LOG_TEXT, "the file over https")
            browser.get(f"{base}/ui/#/node")
            _wait(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, "#cpu-charts svg").get_attribute("data-points") or 0) >= 2, "charts over https")
    finally:
        browser.quit()
