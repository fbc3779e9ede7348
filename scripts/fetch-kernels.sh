#!/bin/sh
# Fetches Debian's stock kernels for the bzImage tests: the cloud flavour (LZ4 payload) and the
# generic one (XZ payload), as kernels/vmlinuz-<abi>-cloud-amd64 and vmlinuz-<abi>-amd64.
# The target directory is $KVMINI_KERNEL_DIR, default ./kernels. Needs apt (Debian 12);
# safe to re-run: a flavour already present is not downloaded again.
set -eu

dir=${KVMINI_KERNEL_DIR:-kernels}
updated=0

die() {
	echo "fetch-kernels: $*" >&2
	exit 1
}

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script needs Debian (12) or a derivative"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found"
mkdir -p "$dir" || die "cannot create '$dir'"

# A generic ABI name ends in a digit before -amd64 (6.1.0-56-amd64); cloud and rt do not.
present() {
	case $1 in
	cloud) set -- "$dir"/vmlinuz-*-cloud-amd64 ;;
	generic) set -- "$dir"/vmlinuz-*[0-9]-amd64 ;;
	esac
	[ -f "$1" ]
}

# The metapackage depends on the current versioned image package.
resolve() {
	apt-cache depends "$1" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() {
	flavour=$1 meta=$2
	if present "$flavour"; then
		echo "fetch-kernels: $flavour kernel already in $dir, skipping"
		return 0
	fi
	pkg=$(resolve "$meta")
	if [ -z "$pkg" ] && [ "$updated" = 0 ]; then
		echo "fetch-kernels: apt-cache does not know $meta; running apt-get update" >&2
		apt-get update -q || die "apt-get update failed (are you root, is the network up?)"
		updated=1
		pkg=$(resolve "$meta")
	fi
	[ -n "$pkg" ] || die "cannot resolve $meta to a linux-image package (is bookworm main in sources.list?)"

	work="$tmp/$flavour"
	mkdir -p "$work/root"
	# Let apt's unprivileged _apt user write the download, so it keeps its sandbox.
	if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
		chmod 755 "$tmp" 2>/dev/null || :
		chown _apt "$work" 2>/dev/null || :
	fi
	echo "fetch-kernels: downloading $pkg"
	(cd "$work" && apt-get download -q "$pkg") || die "apt-get download $pkg failed"
	set -- "$work"/*.deb
	[ -f "$1" ] || die "apt-get download $pkg produced no .deb"
	dpkg-deb -x "$1" "$work/root" || die "dpkg-deb cannot extract $1"

	found=0
	for k in "$work"/root/boot/vmlinuz-*; do
		[ -f "$k" ] || continue
		name=$(basename "$k")
		# Copy then rename, so an interrupted run never leaves a half kernel behind.
		if ! { cp "$k" "$dir/.$name.part" && mv "$dir/.$name.part" "$dir/$name"; }; then
			rm -f "$dir/.$name.part"
			die "cannot write $dir/$name"
		fi
		echo "fetch-kernels: $dir/$name"
		found=1
	done
	[ "$found" = 1 ] || die "$pkg contains no /boot/vmlinuz-*"
}

fetch cloud linux-image-cloud-amd64
fetch generic linux-image-amd64
