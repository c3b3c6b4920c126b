"""Drive voxpool's web page in headless Chromium: python web_check.py [--download] URL SCREENSHOT.

With --download the server has no model files: a speech request fetches Kokoro's from a
(slow) stand-in hub, and the page's model panel must show the download bar."""
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import wave

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

download = sys.argv[1] == "--download"
url, screenshot = sys.argv[2:4] if download else sys.argv[1:3]
options = webdriver.ChromeOptions()
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--autoplay-policy=no-user-gesture-required", "--window-size=1100,1000"]:
    options.add_argument(arg)
binary = shutil.which("chromium") or shutil.which("chromium-browser")
if binary:
    options.binary_location = binary
service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
driver = webdriver.Chrome(service=service, options=options)
# The page redraws its tables as the pool changes: an element found just before a
# redraw is gone when its text is read, and the condition is then tried again.
wait = WebDriverWait(driver, 60, ignored_exceptions=[StaleElementReferenceException])
js = driver.execute_script


def click_in_table(css):
    """Click a button of a table the page redraws every 2 s: found again if it was
    redrawn between finding and clicking."""
    for _ in range(50):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    driver.find_element(By.CSS_SELECTOR, css).click()


def settled(element_id, expected):
    """The text of the message element `element_id` once it says `expected` or shows
    an error."""
    wait.until(lambda d: expected in d.find_element(By.ID, element_id).text
               or "error" in d.find_element(By.ID, element_id).get_attribute("class"))
    return driver.find_element(By.ID, element_id).text

try:
  if download:
    import threading, urllib.request, json
    driver.get(url)
    answer = {}

    def first_request():
        body = json.dumps({"model": "kokoro", "input": "Hello.", "voice": "af_alloy",
                           "response_format": "wav"}).encode()
        req = urllib.request.Request(url + "v1/audio/speech", body, {"Content-Type": "application/json"})
        answer["status"] = urllib.request.urlopen(req, timeout=120).status

    thread = threading.Thread(target=first_request)
    thread.start()
    bar = "tr[data-model='kokoro'] progress.download"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, bar))
    cell = driver.find_element(By.CSS_SELECTOR, "tr[data-model='kokoro'] td.loaded").text
    assert "downloading" in cell and "%" in cell, cell
    driver.save_screenshot(screenshot)
    thread.join(120)
    assert answer.get("status") == 200, answer
    row = "tr[data-model='kokoro'] td.loaded"
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text == "yes")
    print(f"web page: download bar seen ({cell!r}), then kokoro loaded and spoke; screenshot {screenshot}")
  else:
    driver.get(url)
    # Pickers fill from /v1/models and /v1/audio/voices.
    wait.until(lambda d: len(Select(d.find_element(By.ID, "voice")).options) > 0)
    Select(driver.find_element(By.ID, "model")).select_by_value("kokoro")
    wait.until(lambda d: "af_alloy" in [o.get_attribute("value") for o in
                                        Select(d.find_element(By.ID, "voice")).options])
    # The language picker lists the model's languages and follows the voice.
    language = lambda d: Select(d.find_element(By.ID, "language"))
    wait.until(lambda d: len(language(d).options) >= 2)
    codes = [o.get_attribute("value") for o in language(driver).options]
    assert codes[:2] == ["a", "b"], codes
    for voice, code in [("bf_tiny", "b"), ("af_alloy", "a")]:
        Select(driver.find_element(By.ID, "voice")).select_by_value(voice)
        wait.until(lambda d: language(d).first_selected_option.get_attribute("value") == code)
    text = driver.find_element(By.ID, "text")
    text.clear()
    text.send_keys("Hello from the browser. This is a second sentence.")
    Select(driver.find_element(By.ID, "format")).select_by_value("pcm")
    driver.find_element(By.ID, "speak").click()
    message = settled("message", "s of audio")
    assert "s of audio" in message, message
    # The audio element decodes what was streamed.
    duration = wait.until(lambda d: js(
        "const a = document.getElementById('audio'); return a.readyState >= 1 && a.duration > 0 ? a.duration : null;"))
    assert duration > 0.1, duration
    # Read-along: the same text streamed with its words, each highlighted in turn.
    driver.find_element(By.ID, "readAlong").click()
    driver.find_element(By.ID, "speak").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#readalong span")) == 9)
    words = [s.text for s in driver.find_elements(By.CSS_SELECTOR, "#readalong span")]
    assert words == ["Hello", "from", "the", "browser", "This", "is", "a", "second", "sentence"], words
    lit = set()
    deadline = time.time() + 30
    while len(lit) < 3 and time.time() < deadline:
        lit.update(s.text for s in driver.find_elements(By.CSS_SELECTOR, "#readalong span.now"))
        time.sleep(0.02)
    assert len(lit) >= 3, f"words highlighted while playing: {lit}"
    wait.until(lambda d: "s of audio" in d.find_element(By.ID, "message").text)
    driver.find_element(By.ID, "readAlong").click()
    # Pronunciations: add one from the panel, hear it, delete it.
    driver.find_element(By.ID, "pronWord").send_keys("Kokoro")
    driver.find_element(By.ID, "pronPhonemes").send_keys("kˈOkəɹO")
    Select(driver.find_element(By.ID, "pronLanguage")).select_by_value("a")
    driver.find_element(By.ID, "pronAdd").click()
    added = settled("pronMessage", "added Kokoro")
    assert "added Kokoro" in added, added
    row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-pronunciation]"))[0]
    assert "kˈOkəɹO" in row.text, row.text
    click_in_table("tr[data-pronunciation] button.try")
    tried = settled("pronMessage", "spoke")
    assert 'spoke "Kokoro"' in tried, tried
    click_in_table("tr[data-pronunciation] button.delete")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-pronunciation]"))
    # The model panel shows kokoro loaded; Unload changes it.
    row = "tr[data-model='kokoro'] td.loaded"
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text == "yes")
    click_in_table("button.unload[data-model='kokoro']")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text == "no")
    # mp3 as a whole file plays in the same element.
    Select(driver.find_element(By.ID, "format")).select_by_value("mp3")
    driver.find_element(By.ID, "speak").click()
    wait.until(lambda d: "mp3," in d.find_element(By.ID, "message").text)
    duration_mp3 = wait.until(lambda d: js(
        "const a = document.getElementById('audio'); return a.readyState >= 1 && a.duration > 0 ? a.duration : null;"))
    # Clone a voice from a recording, speak with it, delete it.
    clip = os.path.join(tempfile.mkdtemp(), "my-voice.wav")
    with wave.open(clip, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
        w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 160 * i / 22050)
                                                       * (0.6 + 0.4 * math.sin(6 * math.pi * i / 22050))))
                               for i in range(22050 * 6)))
    driver.find_element(By.ID, "voiceName").send_keys("Browser voice")
    driver.find_element(By.ID, "voiceFile").send_keys(clip)
    Select(driver.find_element(By.ID, "voiceModel")).select_by_value("chatterbox-turbo")
    driver.find_element(By.ID, "clone").click()
    created = settled("message", "created")
    assert "created" in created, created
    voice_id = Select(driver.find_element(By.ID, "voice")).first_selected_option.get_attribute("value")
    assert voice_id.startswith("voice_"), voice_id
    assert driver.find_element(By.ID, "model").get_attribute("value") == "chatterbox-turbo"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-voice='{voice_id}']"))
    Select(driver.find_element(By.ID, "format")).select_by_value("wav")
    driver.find_element(By.ID, "speak").click()
    cloned_message = settled("message", "wav,")
    assert "wav," in cloned_message, cloned_message
    driver.save_screenshot(screenshot)
    click_in_table(f"button.delete[data-voice='{voice_id}']")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-voice='{voice_id}']"))
    print(f"web page: streamed {duration:.2f} s (pcm, {message!r}), read along ({len(lit)} words lit), pronunciation added, tried ({tried!r}) and deleted, mp3 {duration_mp3:.2f} s; "
          f"unload seen; cloned {voice_id} from an upload, spoke with it ({cloned_message!r}), "
          f"deleted it; screenshot {screenshot}")
except Exception:
    driver.save_screenshot(screenshot)
    print(driver.find_element(By.ID, "message").text, file=sys.stderr)
    raise
finally:
    driver.quit()
