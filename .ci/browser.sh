#!/usr/bin/env bash
# Debian's headless Chromium and its driver, for the real-browser checks
# (tests/test_browser.py) and `make figures`. Selenium uses these two files and never
# downloads a browser or a driver of its own.
set -euo pipefail

# fonts-noto-cjk: the Chinese notebooks (notebooks/zh/) need a font that draws Chinese.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && fc-list :lang=zh 2>/dev/null | grep -q .; then
  echo "browser ready: $(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Fonts named explicitly: without recommended packages Chromium would draw text as boxes.
$sudo apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-liberation fonts-dejavu-core fonts-noto-cjk fontconfig >/dev/null
echo "browser installed: $(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"
