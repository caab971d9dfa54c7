"""The chat page at `/`, driven in a real browser (Debian's Chromium through
ChromeDriver and Selenium) against running servers.

    python chat_page.py --server PATH/TO/server --out DIR

Starts two servers on loopback (in-memory store and sessions, the hash
embedder, extractive answers; no model, no network): one with an API key and
a small upload limit, one open. On the first, as a user would: the page asks
for the key; upload a Markdown file (and two the limits refuse); ask a
question with Enter; see the answer stream in and cite the file; open the
citation and find the passage highlighted; reload and find the chat in the
list; reopen it; a second question within the minute gets the 429 in words;
delete the chat and the document. On the second: no key is asked for. Also
keyboard use (Shift+Enter), phone width, dark mode and no Content-Security-
Policy violation. Saves a screenshot of the answered chat to DIR/chat-page.png.

Prints `browser: PASSED chat page (N checks, S s)` or raises.
"""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

TIDES = """# Tides

Ocean tides are caused mainly by the gravitational pull of the moon on the
rotating Earth. The sun's pull adds a smaller effect, so the largest tides,
called spring tides, come when the sun and moon line up.

# Harbours

Harbour pilots read the tide tables before bringing a ship in, because the
depth of water over the bar changes by several metres during a day.
"""

CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        raise AssertionError(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server process on a free loopback port, stopped on exit."""

    def __init__(self, binary, work, name, extra):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = os.path.join(work, f"{name}.toml")
        with open(config, "w") as f:
            f.write(
                f'bind = "127.0.0.1:{self.port}"\n'
                'log_format = "json"\n'
                f"{extra.get('top', '')}\n"
                '[store]\nkind = "memory"\n'
                '[sessions]\nkind = "memory"\n'
                '[embedder]\nkind = "hash"\n'
                '[llm]\nkind = "extractive"\n'
                '[reranker]\nkind = "none"\n'
                f"{extra.get('rest', '')}\n"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "DATABASE_URL"}
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--config", config], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        with open(self.log_path) as f:
            sys.stderr.write(f.read()[-3000:])
        raise RuntimeError(f"the {name} server did not answer /health")

    def api(self, path, key=None):
        req = urllib.request.Request(self.base + path)
        if key:
            req.add_header("X-API-Key", key)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def browser(user_data, network_log=False):
    """Headless Chromium; with `network_log`, every request the page makes
    is readable from `driver.get_log("performance")`."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data}",
        "--window-size=1280,800",
    ):
        opts.add_argument(arg)
    logs = {"browser": "ALL"}
    if network_log:
        logs["performance"] = "ALL"
    opts.set_capability("goog:loggingPrefs", logs)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    work = tempfile.mkdtemp(prefix="rag-browser.")
    key = "browser-" + secrets.token_hex(16)
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    servers = []
    driver = None
    try:
        keyed = Server(
            args.server,
            work,
            "keyed",
            {
                "top": "upload_max_file_bytes = 65536",
                "rest": "[rate_limit]\nasks_per_key_per_minute = 1\n"
                f'[[keys]]\nname = "browser"\nhash = "{digest}"\nscopes = ["admin"]\n',
            },
        )
        servers.append(keyed)
        opened = Server(args.server, work, "open", {})
        servers.append(opened)

        driver = browser(os.path.join(work, "chrome"))
        wait = WebDriverWait(driver, 20)
        by_id = lambda i: driver.find_element(By.ID, i)  # noqa: E731

        def text_of(i):
            return by_id(i).text

        # --- The page, its headers, and the key it asks for ---
        with urllib.request.urlopen(keyed.base + "/") as r:
            csp = r.headers["Content-Security-Policy"]
            check("script-src 'self'" in csp and "unsafe-inline" not in csp, f"page CSP: {csp}")
            check(r.headers["Content-Type"].startswith("text/html"), "the page is HTML")
        with urllib.request.urlopen(keyed.base + "/health") as r:
            check(r.headers["Content-Security-Policy"].startswith("default-src 'none'"),
                  "the API keeps its strict policy")

        driver.get(keyed.base + "/")
        wait.until(lambda d: by_id("banner").is_displayed())
        check("API key" in text_of("banner"), f"asks for the key: {text_of('banner')!r}")
        check(by_id("key-form").is_displayed(), "the key field is shown")
        check(key not in driver.current_url, "no key in the URL")
        by_id("api-key").send_keys(key)
        by_id("api-key").send_keys(Keys.ENTER)
        wait.until(lambda d: not by_id("banner").is_displayed())
        wait.until(lambda d: "0 documents" in text_of("doc-count"))
        check(key not in driver.current_url, "still no key in the URL")
        check(driver.execute_script("return sessionStorage.getItem('rag.apiKey')") == key,
              "the key is kept in the tab's session storage")
        check(driver.execute_script("return localStorage.length") == 0, "nothing in local storage")
        limits = text_of("upload-limits")
        check(".md" in limits and "64 KiB" in limits, f"the upload limits are shown: {limits!r}")

        # --- Upload: one accepted, two refused with a clear message ---
        docs = os.path.join(work, "docs")
        os.makedirs(docs)
        tides = os.path.join(docs, "tides.md")
        with open(tides, "w") as f:
            f.write(TIDES)
        big = os.path.join(docs, "big.md")
        with open(big, "w") as f:
            f.write("x" * 70000)
        binary = os.path.join(docs, "photo.png")
        with open(binary, "wb") as f:
            f.write(b"\x89PNG\r\n")
        by_id("files").send_keys("\n".join([tides, big, binary]))
        wait.until(lambda d: "added" in text_of("upload-status"))
        status = text_of("upload-status")
        check(status.startswith("1 added"), f"upload summary: {status!r}")
        check("big.md: larger than 65536 bytes" in status, f"size limit in words: {status!r}")
        check("photo.png: files of this type are not accepted" in status, f"type in words: {status!r}")
        wait.until(lambda d: "tides.md" in text_of("documents"))
        listed = keyed.api("/v1/documents", key)["documents"]
        check([d["source"] for d in listed] == ["tides.md"], f"stored: {listed}")

        # --- Keyboard: Shift+Enter is a new line, Enter sends ---
        q = by_id("question")
        q.click()
        q.send_keys("What causes")
        q.send_keys(Keys.SHIFT, Keys.ENTER)
        check(q.get_attribute("value") == "What causes\n", "Shift+Enter adds a line")
        check(len(driver.find_elements(By.CSS_SELECTOR, "#messages .msg")) == 0, "nothing sent yet")
        q.clear()
        question = "What causes ocean tides?"
        q.send_keys(question)
        q.send_keys(Keys.ENTER)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".msg.assistant .meta")))
        answer = driver.find_element(By.CSS_SELECTOR, ".msg.assistant")
        check("gravitational pull of the moon" in answer.text, f"the answer: {answer.text!r}")
        deltas = int(answer.get_attribute("data-deltas") or 0)
        check(deltas >= 3, f"the answer streamed in as delta events ({deltas})")
        meta = answer.find_element(By.CSS_SELECTOR, ".meta").text
        check("quoted from the sources" in meta and "retrieve" in meta, f"answerer and timings: {meta!r}")
        cites = answer.find_elements(By.CSS_SELECTOR, ".body a.cite")
        check(len(cites) >= 1 and cites[0].text == "[1]", "the answer links its [n] markers")
        wait.until(lambda d: d.switch_to.active_element == by_id("question"))  # focus returns

        # --- The citation opens the passage, highlighted ---
        cites[0].click()
        wait.until(lambda d: by_id("source").is_displayed())
        where = text_of("source-where")
        check(where.startswith("[1] tides.md") and "bytes" in where, f"source and location: {where!r}")
        passage = text_of("source-text")
        check("gravitational pull of the moon" in passage, f"the passage: {passage!r}")
        mark = driver.find_element(By.CSS_SELECTOR, "#source-text mark").text
        check("gravitational pull of the moon" in mark, f"the passage highlighted: {mark!r}")
        shot = os.path.join(args.out, "chat-page.png")
        driver.save_screenshot(shot)
        check(os.path.getsize(shot) > 10000, "screenshot saved")
        by_id("question").send_keys(Keys.ESCAPE)
        wait.until(lambda d: not by_id("source").is_displayed())

        # --- A second question within the minute: the 429 in words ---
        q = by_id("question")
        q.send_keys("And what are spring tides?")
        q.send_keys(Keys.ENTER)
        err = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".msg.error")))
        check("Too many requests: try again in " in err.text
              and "second" in err.text, f"429 in words: {err.text!r}")

        # --- Reload: the chat is in the list, and reopens ---
        driver.refresh()
        wait.until(lambda d: question in text_of("sessions"))
        wait.until(lambda d: len(driver.find_elements(By.CSS_SELECTOR, "#messages .msg")) >= 2)
        restored = text_of("messages")
        check(question in restored and "gravitational pull" in restored, f"reopened: {restored!r}")
        by_id("new-chat").click()
        check(len(driver.find_elements(By.CSS_SELECTOR, "#messages .msg")) == 0, "a new chat is empty")
        driver.find_element(By.CSS_SELECTOR, "#sessions .open").click()
        wait.until(lambda d: question in text_of("messages"))
        sessions = keyed.api("/v1/sessions", key)["sessions"]
        check(len(sessions) == 1 and sessions[0]["message_count"] == 2, f"one session: {sessions}")

        # --- Delete the chat, then the document ---
        driver.find_element(By.CSS_SELECTOR, "#sessions .delete").click()
        wait.until(lambda d: by_id("sessions-empty").is_displayed())
        check(keyed.api("/v1/sessions", key)["sessions"] == [], "the session is deleted")
        delete = driver.find_element(By.CSS_SELECTOR, "#documents .delete")
        check(delete.get_attribute("aria-label") == "Delete document tides.md", "labelled for screen readers")
        delete.click()
        wait.until(EC.alert_is_present()).accept()
        wait.until(lambda d: "Deleted tides.md" in text_of("upload-status"))
        wait.until(lambda d: text_of("doc-count") == "0 documents")
        check(keyed.api("/v1/documents", key)["documents"] == [], "the document is deleted")

        # --- Phone width and dark mode ---
        driver.set_window_size(390, 844)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 0, f"no sideways scrolling at phone width ({overflow}px)")
        check(by_id("question").is_displayed() and by_id("send").is_displayed(), "the composer fits")
        light = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        dark = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        rgb = [int(x) for x in dark[dark.index("(") + 1:dark.index(")")].split(",")[:3]]
        check(light != dark and sum(rgb) < 150, f"dark mode follows the system ({light} -> {dark})")
        driver.set_window_size(1280, 800)

        # --- No Content-Security-Policy violation, no script error ---
        logs = driver.get_log("browser")
        bad = [e["message"] for e in logs if e["level"] == "SEVERE"
               and "401" not in e["message"] and "429" not in e["message"]]
        check(not bad, f"console errors: {bad}")
        check(not any("Content Security Policy" in e["message"] for e in logs), "no CSP violation")

        # --- An open server: no key is asked for ---
        driver.get(opened.base + "/")
        wait.until(lambda d: "0 documents" in text_of("doc-count"))
        check(not by_id("key-form").is_displayed(), "no key field on an open server")
        check(not by_id("banner").is_displayed(), "no error on an open server")

    except (AssertionError, TimeoutException):
        if driver is not None:
            try:
                driver.save_screenshot(os.path.join(args.out, "chat-page-failure.png"))
                sys.stderr.write("page text at failure:\n" + driver.find_element(By.TAG_NAME, "body").text + "\n")
            except Exception:  # noqa: BLE001 - best effort diagnostics
                pass
        for s in servers:
            with open(s.log_path) as f:
                sys.stderr.write(f"--- {s.log_path} (tail)\n" + f.read()[-2000:])
        raise
    finally:
        if driver is not None:
            driver.quit()
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"browser: PASSED chat page ({CHECKS} checks, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
