#!/usr/bin/env bash
# Install the Debian packages a purpose needs, only when they are missing.
#   usage: install-system-deps.sh [--dry-run] PURPOSE   (--dry-run: print them, install nothing)
#   venv:  python3-venv when $PYTHON (default python3) has no ensurepip, without which
#          `python3 -m venv` fails on Debian (make runs this before it creates .venv); only that
#   always (every other purpose): the Unicode fonts scan sheets embed (DejaVu Sans; Droid Sans
#          Fallback for CJK)
#   run:   nothing more
#   test:  DCMTK (the real DICOM peers of the test suite), iproute2 (private network
#          namespaces for peers that cannot bind one address), dicom3tools (dciodvfy checks
#          the objects pacsd writes), poppler-utils (pdftotext/pdftoppm read the scan sheets),
#          postgresql (the tests start a throw-away server of their own from its binaries),
#          chromium (headless browser the tests drive through Playwright: the web interface
#          and the OHIF viewer), npm (fetches the viewer)
#   bench: DCMTK and Orthanc (the servers the ingest benchmark compares against)
#   bench-sheets: poppler-utils (pdftotext/pdfimages/pdftoppm check every sheet the scan-sheet
#          benchmark writes)
set -euo pipefail
dry_run=false
if [ "${1:-}" = --dry-run ]; then dry_run=true; shift; fi
purpose="${1:-test}"
need=()
if [ "$purpose" = venv ]; then
  "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
else
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  [ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || need+=(fonts-droid-fallback)
fi
if [ "$purpose" = test ] || [ "$purpose" = bench ]; then
  command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
fi
if [ "$purpose" = test ] || [ "$purpose" = bench-sheets ]; then
  command -v pdftotext >/dev/null 2>&1 && command -v pdfimages >/dev/null 2>&1 || need+=(poppler-utils)
fi
if [ "$purpose" = test ]; then
  command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)  # certificates made by the HTTPS tests
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ "$purpose" = bench ]; then
  command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if $dry_run; then
  echo "would install: ${need[*]}"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
