"""The console in a real browser: Debian's Chromium, headless, driven over WebDriver by
Debian's chromedriver (selenium, from scripts/requirements-dev.txt). Run by
local/tests/console.rs against a running local pipeline and `payhooks console`:

    console_browser.py CONSOLE_URL PROVIDER REFERENCE SCREENSHOT_DIR

REFERENCE is a transaction with a conflict and a delivered event. Each page's screenshot
is kept in SCREENSHOT_DIR. Exits non-zero, saying why, on the first check that fails.
"""

import datetime
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

url, provider, reference, shots = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def check(condition, what):
    if not condition:
        driver.save_screenshot(os.path.join(shots, "failed.png"))
        text = driver.find_element(By.TAG_NAME, "body").text[:1500]
        sys.exit(f"console check failed: {what} (at {driver.current_url}; the page says:\n{text})")


def wait_until(condition, what, seconds=20):
    try:
        WebDriverWait(driver, seconds).until(condition)
    except Exception:  # noqa: BLE001 - the page is what tells why
        check(False, f"{what} within {seconds} s")


def shot(name):
    # The whole page, however long: the window as tall as the document.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    driver.set_window_size(max(width, 390), min(max(height + 100, 600), 4000))
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))
    driver.set_window_size(1280, 1000)


def accessible(page):
    """What a screen reader needs of every page: a language, one h1, landmarks, a label
    for every field, a caption and column headers for every table."""
    check(driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", f"{page}: lang")
    check(len(driver.find_elements(By.TAG_NAME, "h1")) == 1, f"{page}: one h1")
    check(driver.find_elements(By.TAG_NAME, "main") and driver.find_elements(By.TAG_NAME, "nav"), f"{page}: landmarks")
    for field in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
        labelled = driver.execute_script("return arguments[0].labels.length", field) > 0
        check(labelled, f"{page}: field {field.get_attribute('name')} has a label")
    for button in driver.find_elements(By.TAG_NAME, "button"):
        check((button.text or button.get_attribute("aria-label") or "").strip(), f"{page}: a button has a name")
    for table in driver.find_elements(By.TAG_NAME, "table"):
        check(table.find_elements(By.TAG_NAME, "caption"), f"{page}: a table has a caption")
        check(table.find_elements(By.CSS_SELECTOR, "th[scope=col]"), f"{page}: a table has column headers")
    check(not driver.find_elements(By.TAG_NAME, "script"), f"{page}: no JavaScript needed")


def attempt_rows():
    tables = [t for t in driver.find_elements(By.TAG_NAME, "table") if "Attempts" in t.find_element(By.TAG_NAME, "caption").text]
    return len(tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")) if tables else 0


try:
    # Needs attention: the conflict is listed.
    driver.get(url + "/")
    accessible("needs attention")
    check(driver.title.startswith("Needs attention"), "the first page is what needs attention")
    rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")]
    check(any(f"{provider}/{reference}" in r and "conflict" in r for r in rows), f"{provider}/{reference} listed for its conflict: {rows}")
    check("Merchant endpoint" in driver.page_source, "the endpoint's health")
    check("Status sync" in driver.page_source, "the syncs running late")
    shot("needs-attention")

    # A phone's width: nothing wider than the screen but the tables' own scroll.
    driver.set_window_size(390, 844)
    driver.get(url + "/")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"the page fits a phone's width ({overflow} px too wide)")
    driver.save_screenshot(os.path.join(shots, "needs-attention-phone.png"))
    driver.set_window_size(1280, 1000)

    # Find the transaction: its timeline, the conflict in it, its events.
    driver.get(url + "/tx")
    accessible("find a transaction")
    Select(driver.find_element(By.ID, "provider")).select_by_visible_text(provider)
    driver.find_element(By.ID, "reference").send_keys(reference)
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_until(lambda d: "reference=" in d.current_url, "the transaction's page")
    check(driver.title.startswith(f"{provider}/{reference}"), f"the transaction's page: {driver.title}")
    accessible("a transaction")
    timeline = driver.find_element(By.XPATH, "//table[caption='Timeline']").text
    check("conflict" in timeline and "status completed" in timeline, f"the timeline: {timeline}")
    check("Needs attention: conflict" in driver.page_source, "the reason shown")
    events = driver.find_elements(By.XPATH, "//h3/a[starts-with(@href, '/events/evt_')]")
    check(events, "the transaction's events are shown")
    shot("transaction")

    # The events feed, then one event: resend it and see its new attempt appear.
    driver.get(url + "/events")
    accessible("events")
    check(driver.find_elements(By.XPATH, "//table[caption='Events, oldest first']"), "the feed")
    shot("events")
    driver.get(url + "/tx?provider=" + provider + "&reference=" + reference)
    link = driver.find_element(By.XPATH, "//h3/a[starts-with(@href, '/events/evt_')]")
    event_url = link.get_attribute("href")
    link.click()
    wait_until(lambda d: d.current_url == event_url, "the event's page")
    check(driver.title.startswith("Event evt_"), f"the event's page: {driver.title}")
    accessible("an event")
    before = attempt_rows()
    check(before >= 1, "the event's attempts")
    driver.find_element(By.XPATH, "//button[text()='Resend']").click()
    wait_until(lambda d: "notice=" in d.current_url, "the resend's notice")
    notices = driver.find_elements(By.CSS_SELECTOR, "[role=status]")
    check(notices and "Resent" in notices[0].text, "the resend acknowledged")
    deadline = time.time() + 60
    while attempt_rows() <= before:
        check(time.time() < deadline, f"a new attempt within 60 s (still {before})")
        time.sleep(1)
        driver.refresh()
    kinds = driver.find_element(By.XPATH, "//table[caption='Attempts']").text
    check("resend" in kinds, f"the new attempt is a resend: {kinds}")
    shot("event")

    # Recover a window: how many were resent.
    driver.get(url + "/recover")
    accessible("recover")
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    driver.find_element(By.ID, "since").send_keys(since)
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=status], [role=alert]"), "the recovery's answer", 60)
    status = driver.find_element(By.CSS_SELECTOR, "[role=status], [role=alert]").text
    check(status.startswith("Recovered:") and "resent in" in status, f"the recovery's count: {status}")
    shot("recover")
finally:
    driver.quit()
print("console checks passed; screenshots in", shots)
