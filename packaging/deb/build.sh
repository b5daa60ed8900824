#!/usr/bin/env bash
# make deb: dist/tentacle_<version>_<arch>.deb, built with dpkg-deb.
#
# Layout: the application in /opt/tentacle as a virtual environment of Debian's
# /usr/bin/python3, /usr/bin/tentacle, the unit templates in /lib/systemd/system,
# /etc/tentacle; the maintainer scripts (packaging/deb/*) add the `tentacle`
# system user and start nothing until an instance is configured.
#
# Virtual environments are not relocatable: the one shipped is built in a staging
# root at STAGE/opt/tentacle, then every text file that names the staging path
# (the scripts' shebangs, pyvenv.cfg, activate) is rewritten to /opt/tentacle, and
# the build fails if any file still names it. Bytecode is compiled for the final
# paths (compileall -s/-p) and shipped, so that the tracked files are all there is.
# gzip, not dpkg-deb's default xz: several times faster to build (-Zxz for a release).
#
# Usage: packaging/deb/build.sh WHEEL OUTPUT_DIR   (WHEEL: the project's, `make wheel`)
set -euo pipefail

WHEEL=$(realpath "$1")
OUT=$(realpath -m "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=/usr/bin/python3  # Debian's: the venv links to it, the package depends on it

[ -x "$PYTHON" ] || { echo "error: $PYTHON is missing (apt-get install python3 python3-venv)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/agent/__init__.py")
ARCH=$(dpkg --print-architecture)  # the venv holds compiled extensions (aiohttp, cryptography)
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
NEXT=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
[ -n "$VERSION" ] || { echo "error: no __version__ in agent/__init__.py" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
APP=$STAGE/opt/tentacle

"$PYTHON" -m venv "$APP"
# from the index pip is configured with (as make setup): the wheel's dependencies
"$APP/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-compile "$WHEEL"
"$APP/bin/pip" uninstall --quiet --yes pip setuptools
rm -f "$APP"/bin/activate.csh "$APP"/bin/activate.fish "$APP"/bin/Activate.ps1

SITE=$APP/lib/python$PYVER/site-packages
# `tentacle service` reads the templates from the package (agent/cli/units.py); a
# wheel without them gets the repository's
if [ ! -d "$SITE/agent/systemd" ]; then
    install -d "$SITE/agent/systemd"
    install -m 0644 "$ROOT"/systemd/*.service "$SITE/agent/systemd/"
fi

# the staging path out of every text file (shebangs, pyvenv.cfg, activate)
grep -rlI --null -F "$STAGE" "$APP" | xargs -0 -r sed -i "s|$STAGE||g"
find "$APP" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m compileall -q -j 0 -s "$STAGE" -p / "$APP/lib" >/dev/null
if grep -rl -F "$STAGE" "$APP"; then
    echo "error: the files above still name the staging path $STAGE" >&2
    exit 1
fi

install -d "$STAGE/usr/bin" "$STAGE/etc/tentacle" "$STAGE/lib/systemd/system" \
    "$STAGE/usr/share/doc/tentacle"
ln -s /opt/tentacle/bin/tentacle "$STAGE/usr/bin/tentacle"
install -m 0644 "$ROOT"/systemd/*.service "$STAGE/lib/systemd/system/"
install -m 0644 "$ROOT/README.md" "$STAGE/usr/share/doc/tentacle/README.md"
cat > "$STAGE/usr/share/doc/tentacle/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tentacle

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

install -d "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$HERE/$script" "$STAGE/DEBIAN/$script"
done
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" \
    -e "s|@PYVER@|$PYVER|" -e "s|@NEXT@|$NEXT|" "$HERE/control.in" > "$STAGE/DEBIAN/control"

mkdir -p "$OUT"
DEB=$OUT/tentacle_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zgzip --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
