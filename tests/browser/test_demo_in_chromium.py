"""The live demo as a presenter uses it: notebook 06 served by Voila (`make demo`'s command,
`utils.face.demo.voila_command`) from a fresh copy of the repository's files, opened in headless
Chromium from the system's packages (Playwright drives it; no browser is downloaded), three
tweets typed and submitted with Enter.

Run by `make test-browser` (which `.ci/run` calls after `make test`); needs /usr/bin/chromium
(Debian's `chromium` package: `make test-browser` installs it with apt-get when it is missing).
DEMO_SCREENSHOT_DIR=<dir> also saves the screenshots the README shows (`make demo-screenshots`).
"""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from utils.common.io import REPO_ROOT
from utils.face import demo

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WINDOW = {"width": 1280, "height": 900}   # a laptop on a projector
TWEETS = [("@united thanks, the crew was wonderful and we landed early!", "positive"),
          ("@AmericanAir 3 hours on the tarmac and no update. Worst airline ever.", "negative"),
          ("Flight 2301 to Denver departs from gate B12 at 5pm", "neutral")]
# What a notebook page must not show: start-up lines of TensorFlow/TFLite/transformers, errors.
NOISE = ("absl::InitializeLog", "oneDNN", "cuda drivers", "TensorFlow binary is optimized",
         "XNNPACK", "PyTorch was not found", "Traceback", "Something went wrong")
COMMITTED = ("dense-int8", "pruned-int8")   # the bundles a fresh clone has


def fresh_copy(target):
    """The repository's files as a clone of them would have them (tracked and not ignored,
    with their working-tree content): no checkpoints, no data splits, no results of a local
    run that were not committed."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (`make test-browser` "
                    "does) or set CHROMIUM to a Chromium binary")
    return fresh_copy(tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="module")
def server(clone):
    port = free_port()
    notebook = clone / demo.NOTEBOOK.relative_to(REPO_ROOT)
    command = demo.voila_command(port, open_browser=False)
    command[command.index(str(demo.NOTEBOOK))] = str(notebook)
    env = {**os.environ, "PYTHONPATH": str(clone)}   # `import utils` is the copy's
    log = open(clone / "voila.log", "w")
    process = subprocess.Popen(command, cwd=notebook.parent, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"voila exited: {(clone / 'voila.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        pytest.fail(f"voila did not answer at {url} in 120 s")
    yield url, notebook
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    url, notebook = server
    before = digest(notebook)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=WINDOW)
        started = time.perf_counter()
        page.goto(url, timeout=120_000)
        page.wait_for_selector(".demo-cards", timeout=180_000)
        page.interactive_seconds = time.perf_counter() - started
        yield page
        browser.close()
    assert digest(notebook) == before, "presenting the notebook changed it"


def labels(page):
    return dict(page.locator(".demo-card[data-model]").evaluate_all(
        "cards => cards.map(c => [c.dataset.model, "
        "(c.querySelector('.demo-label') || {}).dataset?.label || null])"))


def submit(page, text):
    box = page.locator(".demo-input input")
    box.fill(text)
    box.press("Enter")
    wait_for_answer(page, text)


def wait_for_answer(page, text):
    # the answer shows the text as the models read it; the last word is never rewritten
    page.wait_for_function(
        "word => { const c = document.querySelector('.demo-read code');"
        " return c && c.textContent.endsWith(word); }", arg=text.split()[-1], timeout=30_000)


def test_every_card_is_there_before_the_first_tweet(page):
    names = page.locator(".demo-card .demo-name").all_inner_texts()
    assert names == list(demo.DEFAULT_MODELS)   # side by side, in order, missing ones included
    assert set(COMMITTED) <= set(labels(page))   # the committed bundles are loaded, not missing
    missing = page.locator(".demo-card.demo-missing").all_inner_texts()
    assert all("make run" in card for card in missing)


@pytest.mark.parametrize("text, expected", TWEETS)
def test_enter_answers_with_every_card(page, text, expected):
    submit(page, text)
    answered = labels(page)
    assert {name: answered[name] for name in COMMITTED} == {name: expected for name in COMMITTED}
    assert all(label is not None for label in answered.values())
    for name in COMMITTED:
        card = page.locator(f'.demo-card[data-model="{name}"]').inner_text()
        assert " ms" in card and "MB" in card and "parameters" in card
    pruned = page.locator('.demo-card[data-model="pruned-int8"]').inner_text()
    assert "vs dense-int8" in pruned and "smaller" in pruned
    bottom = page.locator(".demo-cards").bounding_box()
    assert bottom["y"] + bottom["height"] <= WINDOW["height"], "the answer is below the fold"
    screenshot(page, "06_demo_fresh_clone.png" if expected == "positive" else None)


def test_examples_and_text_stay_in_step(page):
    examples = page.locator(".demo-examples select")
    example = demo.EXAMPLES[1]
    examples.select_option(index=2)
    wait_for_answer(page, example)
    assert page.locator(".demo-input input").input_value() == example
    submit(page, "what a lovely day")
    assert examples.evaluate("s => s.selectedIndex") == 0   # back to the placeholder
    examples.select_option(index=2)                          # the same example, again
    wait_for_answer(page, example)


def test_the_page_shows_no_noise(page):
    text = page.locator("body").inner_text()
    found = [word for word in NOISE if word.lower() in text.lower()]
    assert not found, f"the page shows {found}"
    assert page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0


def test_an_empty_tweet_gets_a_message(page):
    box = page.locator(".demo-input input")
    box.fill("   ")
    box.press("Enter")
    page.wait_for_selector(".demo-message", timeout=30_000)
    assert "empty" in page.locator(".demo-message").inner_text()


def screenshot(page, name):
    directory = os.environ.get("DEMO_SCREENSHOT_DIR")
    if directory and name:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / name))
