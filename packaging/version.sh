#!/bin/sh
# Prints the upstream part of the Debian version of the package built from this checkout,
# derived from `git describe` (the package adds the Debian revision "-1"):
#
#   tag v1.2.3, on the tag            1.2.3
#   tag v1.2.0-rc1, on the tag        1.2.0~rc1          (sorts before 1.2.0)
#   3 commits after tag v1.2.3        1.2.3+3.g1a2b3c4d  (sorts after 1.2.3)
#   no tag yet                        0.0.0~git20261124123456.g1a2b3c4d (commit time, UTC)
#   uncommitted changes               ...+dirty          (sorts after the clean build)
#
# `version.sh DESCRIBE [COMMIT_TIME]` converts a given describe output, for tests.
set -eu

if [ $# -ge 1 ]; then
	desc=$1
	when=${2:-19700101000000}
else
	desc=$(git describe --tags --long --abbrev=8 --match 'v[0-9]*' --dirty 2>/dev/null ||
		git describe --always --abbrev=8 --dirty)
	when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
fi

dirty=
case $desc in
*-dirty)
	dirty=+dirty
	desc=${desc%-dirty}
	;;
esac

case $desc in
v[0-9]*-*-g*)
	# vTAG-N-gHASH; TAG itself may hold '-' (v1.2.0-rc1).
	hash=${desc##*-g}
	rest=${desc%-g*}
	n=${rest##*-}
	tag=$(printf '%s' "${rest%-*}" | sed 's/^v//; s/-/~/g')
	if [ "$n" = 0 ]; then
		v=$tag
	else
		v=$tag+$n.g$hash
	fi
	;;
*)
	v=0.0.0~git$when.g$desc
	;;
esac

if ! printf '%s\n' "$v" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$'; then
	echo "version.sh: cannot make a Debian version of '$desc' (got '$v')" >&2
	exit 1
fi
printf '%s%s\n' "$v" "$dirty"
