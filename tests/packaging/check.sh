#!/usr/bin/env bash
# Packaging check: what a user of weft gets.
#   1. `meson install` (into a temporary DESTDIR) puts libweft.so.0, libweft.a,
#      weft.h + weft/*.h and weft.pc in place;
#   2. a plain `cc $(pkg-config --cflags --libs weft)` build against that
#      install links and runs (shared, and static with --static);
#   3. the installed public header compiles as C11 (-pedantic -Werror, gcc and
#      clang) and as C++17 (g++, clang++);
#   4. examples/subproject builds with weft as a meson subproject (through
#      its wrap's [provide]) and runs.
# Usage: check.sh SOURCE_ROOT BUILD_ROOT. Exit 77 (skip) when a tool is missing
# or the kernel refuses io_uring; without a C++ compiler the other checks run
# and it still exits 77, naming the one it could not do.
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)

for tool in meson ninja pkg-config cc; do
	command -v "$tool" >/dev/null || { echo "skip: $tool not installed"; exit 77; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# ------------------------------------------------------------ 1. install ---
step "meson install --destdir $tmp/dest"
meson install -C "$build" --no-rebuild --destdir "$tmp/dest" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log" >&2; fail "meson install"; }
dest=$tmp/dest

so=$(find "$dest" -name 'libweft.so.0' | head -n1)
[[ -n $so && -e $so ]] || fail "libweft.so.0 not installed"
libdir=$(dirname "$so")
[[ -f $libdir/libweft.a ]] || fail "libweft.a not installed next to libweft.so.0"
[[ -e $libdir/libweft.so ]] || fail "libweft.so (development link) not installed"
pc=$(find "$dest" -name weft.pc | head -n1)
[[ -n $pc ]] || fail "weft.pc not installed"
hdr=$(find "$dest" -path '*/include/weft.h' | head -n1)
[[ -n $hdr ]] || fail "weft.h not installed"
incdir=$(dirname "$hdr")
for h in "$src"/include/weft/*.h; do
	[[ -f $incdir/weft/$(basename "$h") ]] || fail "weft/$(basename "$h") not installed"
done
# Only the public API is exported (version script WEFT_0, weft_* only).
if command -v nm >/dev/null; then
	bad=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ && $3 !~ /^weft_/ {print $3}' |
	      grep -v '^WEFT_0$' || true)
	[[ -z $bad ]] || fail "libweft.so exports non-API symbols: $(echo $bad | head -c 300)"
fi
echo "installed: $so, $libdir/libweft.a, $pc, $incdir/weft.h"

# ----------------------------------------------------------- 2. pkg-config ---
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$dest     # weft.pc names the real prefix
pkg-config --exists weft || fail "pkg-config does not find weft"
step "cc \$(pkg-config --cflags --libs weft): $(pkg-config --cflags --libs weft)"
prog=$src/examples/subproject/main.c
# shellcheck disable=SC2046  # word splitting of pkg-config output is intended
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/hello" "$prog" $(pkg-config --cflags --libs weft)
set +e
LD_LIBRARY_PATH=$libdir "$tmp/hello"; rc=$?
set -e
[[ $rc == 77 ]] && { echo "skip: io_uring not available"; exit 77; }
[[ $rc == 0 ]] || fail "pkg-config build (shared) exited $rc"
needed=$(readelf -d "$tmp/hello" 2>/dev/null || true)
[[ $needed == *"[libweft.so.0]"* ]] || fail "hello does not record NEEDED libweft.so.0"

step "static: cc ... \$(pkg-config --static --libs weft) with libweft.a"
libs=$(pkg-config --static --libs weft | sed 's/-lweft\b/-l:libweft.a/')
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/hello-static" "$prog" $(pkg-config --cflags weft) $libs
"$tmp/hello-static" || fail "pkg-config build (static) failed"
needed=$(readelf -d "$tmp/hello-static" 2>/dev/null || true)
[[ $needed != *libweft* ]] || fail "the static build still needs libweft.so"

# ------------------------------------------------------------- 3. headers ---
step "public header as C11 -pedantic and C++17"
cat >"$tmp/h.c" <<'C'
#include <weft.h>
/* The static initialisers must work in both languages too. */
static weft_mutex m = WEFT_MUTEX_INIT;
static weft_rwlock rw = WEFT_RWLOCK_INIT;
static weft_cond cv = WEFT_COND_INIT;
static weft_wg wg = WEFT_WG_INIT;
static weft_once_flag once = WEFT_ONCE_INIT;
int main(void)
{
	(void)m; (void)rw; (void)cv; (void)wg; (void)once;
	return weft_self() != 0;
}
C
cp "$tmp/h.c" "$tmp/h.cpp"
cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$incdir" "$tmp/h.c" ||
	fail "weft.h is not clean C11"
for c in gcc clang; do
	command -v $c >/dev/null || continue
	$c -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$incdir" "$tmp/h.c" ||
		fail "weft.h is not clean C11 for $c"
done
cxx_seen=0
for cxx in g++ clang++; do
	command -v $cxx >/dev/null || continue
	cxx_seen=1
	$cxx -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$incdir" "$tmp/h.cpp" ||
		fail "weft.h does not compile as C++17 with $cxx"
done
skipped=()
((cxx_seen)) || skipped+=("C++17 header check: neither g++ nor clang++ installed")

# ---------------------------------------------------------- 4. subproject ---
step "examples/subproject with weft as a subproject"
sp=$tmp/sp
cp -r "$src/examples/subproject" "$sp"
rm -rf "$sp/build" "$sp/subprojects/weft"
mkdir -p "$sp/subprojects/weft"
# The weft tree as a release would ship it: tracked files plus new ones that
# git does not ignore (no build folders).
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
	 tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
		tar -xf - -C "$sp/subprojects/weft"
else
	tar -C "$src" --exclude='./build*' -cf - . | tar -xf - -C "$sp/subprojects/weft"
fi
rm -rf "$sp/subprojects/weft/examples/subproject"   # no copy of ourselves inside
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
meson setup "$sp/build" "$sp" --force-fallback-for=weft >"$tmp/sp-setup.log" 2>&1 ||
	{ cat "$tmp/sp-setup.log" >&2; fail "meson setup of the subproject example"; }
ninja -C "$sp/build" weft-example >"$tmp/sp-build.log" 2>&1 ||
	{ tail -40 "$tmp/sp-build.log" >&2; fail "building the subproject example"; }
"$sp/build/weft-example" || fail "subproject example exited $?"

if ((${#skipped[@]})); then
	echo "packaging: the other checks passed; SKIPPED: ${skipped[*]}"
	exit 77
fi
echo "packaging: all checks passed"
