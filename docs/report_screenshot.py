"""Take the screenshot of the HTML report shown in the README (docs/report-screenshot.png).

    .venv/bin/python docs/report_screenshot.py                 # demo run, then its report
    .venv/bin/python docs/report_screenshot.py outputs/demo/report.html

Without an argument it runs `batcher run jobs/demo.yaml --emulator --report` into a
temporary folder (no network, no token) and photographs that report; with one, it
photographs the given page. Uses Debian's headless chromium through tests/browser.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import Browser, find_chromium  # noqa: E402

WAIT_FOR_PLAYERS = (
    "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))).then(() =>"
    " Promise.all([...document.querySelectorAll('video')].map(v => new Promise(r => {"
    " if (v.readyState >= 2 || v.error) return r(); v.addEventListener('loadeddata', r);"
    " v.addEventListener('error', r); setTimeout(r, 3000); }))))"
)


def demo_report(folder: Path) -> Path:
    """Run the demo job file against the in-process emulator; the report's path."""
    subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(ROOT / "jobs" / "demo.yaml"), "--emulator",
         "--no-progress", "--report", "--state", str(folder / "state.db"), "--out",
         str(folder / "outputs")],
        check=True, cwd=folder, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return folder / "outputs" / "demo" / "report.html"


def shoot(page: Path, png: Path, width: int, height: int) -> None:
    exe = find_chromium()
    if exe is None:
        raise SystemExit("no chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(exe, Path(profile))
        try:
            tab = browser.new_page(width, height)
            tab.goto(page.resolve().as_uri())
            tab.eval(WAIT_FOR_PLAYERS)
            tab.screenshot(png)
            if tab.errors or tab.dialogs:
                raise SystemExit(f"the page reported problems: {tab.errors + tab.dialogs}")
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, help="an HTML report (default: demo)")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page = args.report or demo_report(Path(tmp))
        shoot(page, args.out, args.width, args.height)
    print(f"screenshot of {page if args.report else 'the demo report'}: {args.out}")  # noqa: T201 (a script)


if __name__ == "__main__":
    main()
