"""The interactive API documentation, /docs (Swagger UI) and /redoc (ReDoc),
driven in a real browser (Debian's Chromium through ChromeDriver and
Selenium) against a running server.

    python api_docs.py --server PATH/TO/server --out DIR

Starts a server on loopback with an API key (in-memory store, the hash
embedder, extractive answers; no model, no network) and, as a user would:
opens /docs and finds every operation of /openapi.json listed; types the key
in "Authorize"; ingests a document and asks about it with "Try it out"; then
opens /redoc and finds every path there. Checks each page's
Content-Security-Policy, that the browser requested nothing from another
origin, that the key was sent to this server only and kept in no storage,
and that nothing was refused by the policy or failed in a script. A second
server with `ui.api_docs = false` answers 404 on both pages. Saves
screenshots to DIR/api-docs.png and DIR/redoc.png.

Prints `browser: PASSED api docs (N checks, S s)` or raises.
"""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_page  # noqa: E402  (its Server and browser helpers)
from chat_page import Server, check  # noqa: E402

DOC_ID = "tides-api-docs"
DOC_TEXT = (
    "Spring tides come when the sun and the moon line up. Harbour pilots "
    "read the tide tables before bringing a ship over the bar."
)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def set_react_value(driver, element, value):
    """Types into a React-controlled textarea: sets the value through the
    native setter and fires `input`, as typing would."""
    driver.execute_script(
        "const [el, v] = arguments;"
        "const proto = Object.getPrototypeOf(el);"
        "Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, v);"
        "el.dispatchEvent(new Event('input', {bubbles: true}));",
        element,
        value,
    )


def operation(driver, method, path):
    return driver.find_element(
        By.XPATH,
        f"//div[contains(@class,'opblock-{method}')]"
        f"[.//*[contains(@class,'opblock-summary-path')][@data-path='{path}']]",
    )


def try_it_out(driver, wait, method, path, body):
    """Expands an operation, fills its body, executes it; returns the
    status and body Swagger UI shows."""
    op = operation(driver, method, path)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", op)
    op.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(lambda d: op.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    op.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    area = wait.until(lambda d: op.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    set_react_value(driver, area, json.dumps(body))
    op.find_element(By.CSS_SELECTOR, "button.execute").click()
    cell = ".live-responses-table tbody .response-col_status"
    wait.until(lambda d: op.find_elements(By.CSS_SELECTOR, cell)
               and op.find_element(By.CSS_SELECTOR, cell).text.strip())
    driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'})",
        op.find_element(By.CSS_SELECTOR, ".live-responses-table"),
    )
    status = op.find_element(By.CSS_SELECTOR, cell).text.strip()
    shown = op.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre").text
    return status, shown


def requested_urls(driver):
    """Every URL the page asked the network for since the last call
    (Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            req = msg["params"]["request"]
            urls.append((req["url"], req.get("headers", {})))
    return urls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    work = tempfile.mkdtemp(prefix="rag-api-docs.")
    key = "docs-" + secrets.token_hex(16)
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    servers = []
    driver = None
    try:
        keyed = Server(
            args.server,
            work,
            "keyed",
            {"rest": f'[[keys]]\nname = "docs"\nhash = "{digest}"\nscopes = ["admin"]\n'},
        )
        servers.append(keyed)
        off = Server(args.server, work, "off", {"rest": "[ui]\napi_docs = false\n"})
        servers.append(off)

        # --- Turned off by configuration ---
        for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"):
            check(status_of(off.base + path) == 404, f"{path} answers 404 when api_docs is off")

        # --- The pages' policies ---
        for path in ("/docs", "/redoc"):
            with urllib.request.urlopen(keyed.base + path) as r:
                csp = r.headers["Content-Security-Policy"]
                check(r.headers["Content-Type"].startswith("text/html"), f"{path} is HTML")
            directives = dict(
                (d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip()
            )
            check(directives.get("script-src") == "'self'", f"{path}: scripts from here only: {csp}")
            check(directives.get("connect-src") == "'self'", f"{path}: requests to here only: {csp}")
            check(directives.get("default-src") == "'none'", f"{path}: nothing else: {csp}")
        with urllib.request.urlopen(keyed.base + "/health") as r:
            check(r.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'",
                  "the API keeps its strict policy")

        spec = keyed.api("/openapi.json")
        expected = {
            (m, p) for p, item in spec["paths"].items() for m in item if m in METHODS
        }
        check(("get", "/docs") in expected and ("get", "/redoc") in expected,
              "the document lists the pages")

        driver = chat_page.browser(os.path.join(work, "chrome"), network_log=True)
        wait = WebDriverWait(driver, 30)
        requested_urls(driver)  # drop the browser's own start-up requests

        # --- Swagger UI: every operation is listed ---
        driver.get(keyed.base + "/docs")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected))
        shown = set(
            tuple(x)
            for x in driver.execute_script(
                "return [...document.querySelectorAll('.opblock')].map(op => ["
                "  [...op.classList].find(c => /^opblock-(get|put|post|delete|patch|head|options|trace)$/.test(c))"
                "    .slice('opblock-'.length),"
                "  op.querySelector('.opblock-summary-path').dataset.path])"
            )
        )
        missing = sorted(expected - shown)
        check(not missing, f"operations missing from /docs: {missing}")
        check(len(shown) == len(expected), f"{len(shown)} operations shown, {len(expected)} documented")
        title = driver.find_element(By.CSS_SELECTOR, ".info .title").text
        check(title.startswith(spec["info"]["title"]), f"the document's title: {title!r}")

        # --- Authorize: the key is typed once, kept in the page only ---
        driver.find_element(By.CSS_SELECTOR, "button.authorize").click()
        field = wait.until(lambda d: d.find_element(By.ID, "api_key_value"))
        field.send_keys(key)
        form = field.find_element(By.XPATH, "./ancestor::form")
        form.find_element(By.CSS_SELECTOR, "button[aria-label='Apply credentials']").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".modal-ux button[aria-label='Remove authorization']"))
        driver.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".modal-ux"))

        # --- Try it out: ingest a document, then ask about it ---
        status, body = try_it_out(
            driver, wait, "post", "/v1/documents",
            {"documents": [{"id": DOC_ID, "source": "tides.md", "text": DOC_TEXT}]},
        )
        check(status == "200", f"ingest through Try it out: {status} {body[:300]}")
        check(json.loads(body)["added"] == [DOC_ID], f"the document added: {body[:300]}")
        stored = keyed.api(f"/v1/documents/{DOC_ID}", key)
        check(stored["id"] == DOC_ID, f"the server has the document: {stored}")

        status, body = try_it_out(
            driver, wait, "post", "/v1/ask", {"question": "When do spring tides come?"}
        )
        check(status == "200", f"ask through Try it out: {status} {body[:300]}")
        answer = json.loads(body)
        check("moon" in answer["text"].lower(), f"the answer uses the document: {answer['text']!r}")
        check(any(c.get("document_id") == DOC_ID for c in answer["citations"]),
              f"the answer cites it: {answer['citations']}")
        driver.save_screenshot(os.path.join(args.out, "api-docs.png"))

        stored_keys = driver.execute_script(
            "return JSON.stringify(Object.assign({}, localStorage)) + JSON.stringify(Object.assign({}, sessionStorage))"
        )
        check(key not in stored_keys, "the key is in no browser storage")
        check(key not in driver.current_url, "the key is not in the URL")

        # --- ReDoc: every path is shown ---
        driver.get(keyed.base + "/redoc")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".api-content"))
        wait.until(lambda d: spec["info"]["title"] in d.find_element(By.TAG_NAME, "body").text)
        text = driver.execute_script("return document.body.textContent")
        paths = sorted({p for _, p in expected})
        missing = [p for p in paths if p not in text]
        check(not missing, f"paths missing from /redoc: {missing}")
        driver.save_screenshot(os.path.join(args.out, "redoc.png"))

        # --- Nothing from elsewhere; the key went to this server only ---
        urls = requested_urls(driver)
        origin = urllib.parse.urlsplit(keyed.base)
        foreign = []
        keyed_requests = 0
        for url, headers in urls:
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https", "ws", "wss"):
                # data: and blob: stay in the page; chrome: is the browser's
                # own new-tab page.
                continue
            if (u.scheme, u.netloc) != (origin.scheme, origin.netloc):
                foreign.append(url[:120])
            if any(v == key for v in headers.values()):
                keyed_requests += 1
                check(u.netloc == origin.netloc, f"the key went to {url}")
        check(not foreign, f"requests to other origins: {foreign}")
        check(keyed_requests >= 2, f"the key was sent with Try it out ({keyed_requests} requests)")

        # --- No policy violation, no script error ---
        logs = driver.get_log("browser")
        bad = [e["message"][:300] for e in logs if e["level"] == "SEVERE"]
        check(not bad, f"console errors: {bad}")
        check(not any("Content Security Policy" in e["message"] for e in logs), "no CSP violation")

    except (AssertionError, TimeoutException):
        if driver is not None:
            try:
                driver.save_screenshot(os.path.join(args.out, "api-docs-failure.png"))
                sys.stderr.write("page text at failure:\n" + driver.find_element(By.TAG_NAME, "body").text[:3000] + "\n")
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
    print(f"browser: PASSED api docs ({chat_page.CHECKS} checks, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
