#!/usr/bin/env bash
# ui-check.sh URL OUT.png EXPECTED_TEXT...
#
# Loads URL in headless Chromium the way a person's browser would (the page is
# a single-page app, so it is given virtual time to fetch and render), checks
# that every EXPECTED_TEXT appears in the rendered DOM (a text written !TEXT
# must not appear), and saves a 1400x900 screenshot to OUT.png.
#
# Exit status: 0 all texts found (or Chromium absent and not required),
# 1 a text is missing, 2 usage or Chromium failure.
#
# Environment:
#   UI_CHECK_REQUIRED=1   fail (exit 2) instead of skipping when Chromium is absent
#   CHROMIUM=/path        browser binary; default: chromium, chromium-browser, google-chrome
#   UI_CHECK_BUDGET_MS    virtual time given to the page to render; default 15000
#   UI_CHECK_TIMEOUT      wall-clock seconds per browser run; default 120
set -euo pipefail

usage() {
	echo "usage: $0 URL OUT.png EXPECTED_TEXT..." >&2
	exit 2
}
[[ $# -ge 3 ]] || usage
url=$1
out=$2
shift 2

browser=${CHROMIUM:-}
if [[ -z $browser ]]; then
	for b in chromium chromium-browser google-chrome; do
		if command -v "$b" >/dev/null 2>&1; then
			browser=$b
			break
		fi
	done
fi
if [[ -z $browser ]]; then
	if [[ ${UI_CHECK_REQUIRED:-} == 1 ]]; then
		echo "FAIL: ui-check: Chromium not found and UI_CHECK_REQUIRED=1 (apt-get install -y chromium)" >&2
		exit 2
	fi
	echo "SKIP: ui-check: Chromium not found (apt-get install -y chromium); set UI_CHECK_REQUIRED=1 to fail instead"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
budget=${UI_CHECK_BUDGET_MS:-15000}
limit=${UI_CHECK_TIMEOUT:-120}

# No network beyond the page itself, no profile state, no first-run UI:
# the result must depend on the page only.
run_browser() {
	timeout "$limit" "$browser" --headless --no-sandbox --disable-gpu \
		--disable-background-networking --disable-component-update --disable-sync \
		--no-first-run --hide-scrollbars --user-data-dir="$work/profile" \
		--window-size=1400,900 --virtual-time-budget="$budget" "$@"
}

if ! run_browser --dump-dom "$url" >"$work/dom.html" 2>"$work/dump.log" || [[ ! -s $work/dom.html ]]; then
	echo "FAIL: ui-check: $browser could not render $url; its log ends with:" >&2
	tail -n 20 "$work/dump.log" >&2
	exit 2
fi

# The picture is taken even when a text is missing: it is the fastest way to
# see why.
mkdir -p "$(dirname "$out")"
rm -f "$out"
if ! run_browser --screenshot="$out" "$url" >"$work/shot.log" 2>&1 || [[ ! -s $out ]]; then
	echo "FAIL: ui-check: $browser could not save a screenshot of $url to $out; its log ends with:" >&2
	tail -n 20 "$work/shot.log" >&2
	exit 2
fi
if [[ $(head -c 8 "$out" | od -An -tx1 | tr -d ' \n') != 89504e470d0a1a0a ]]; then
	echo "FAIL: ui-check: $out is not a PNG" >&2
	exit 2
fi

missing=()
present=()
for text in "$@"; do
	if [[ $text == !* ]]; then
		! grep -qF -- "${text#!}" "$work/dom.html" || present+=("${text#!}")
	else
		grep -qF -- "$text" "$work/dom.html" || missing+=("$text")
	fi
done
if [[ ${#missing[@]} -gt 0 || ${#present[@]} -gt 0 ]]; then
	cp "$work/dom.html" "$out.dom.html"
	[[ ${#missing[@]} -eq 0 ]] || echo "FAIL: ui-check: $url rendered without: ${missing[*]}" >&2
	[[ ${#present[@]} -eq 0 ]] || echo "FAIL: ui-check: $url rendered what it must not: ${present[*]}" >&2
	echo "  rendered DOM saved to $out.dom.html, screenshot to $out" >&2
	exit 1
fi
echo "OK: ui-check: $url shows all ${#@} expected texts; screenshot $out"
