#include "arch/x86/bzimage.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Debian's decompression libraries are loaded on first use, not at exec: most runs (the
 * demo, ELF guests, a kernel the guest unpacks) never need them, and linking all five costs
 * about 0.2 ms of start-up and 0.4 MiB of resident memory. Each list below is the whole of
 * what kvmini uses from that library; the struct and the symbol names come from it. */
#define ZLIB_FNS(X)                                                \
	X(int, inflateInit2_, (z_streamp, int, const char *, int)) \
	X(int, inflate, (z_streamp, int))                          \
	X(int, inflateEnd, (z_streamp))
#define LZMA_FNS(X)                                                           \
	X(lzma_ret, lzma_stream_decoder, (lzma_stream *, uint64_t, uint32_t)) \
	X(lzma_ret, lzma_alone_decoder, (lzma_stream *, uint64_t))            \
	X(lzma_ret, lzma_code, (lzma_stream *, lzma_action))                  \
	X(void, lzma_end, (lzma_stream *))
#define ZSTD_FNS(X)                                                                         \
	X(ZSTD_DCtx *, ZSTD_createDCtx, (void))                                             \
	X(size_t, ZSTD_freeDCtx, (ZSTD_DCtx *))                                             \
	X(size_t, ZSTD_findFrameCompressedSize, (const void *, size_t))                     \
	X(size_t, ZSTD_decompressDCtx, (ZSTD_DCtx *, void *, size_t, const void *, size_t)) \
	X(unsigned, ZSTD_isError, (size_t))                                                 \
	X(ZSTD_ErrorCode, ZSTD_getErrorCode, (size_t))                                      \
	X(const char *, ZSTD_getErrorName, (size_t))
#define LZ4_FNS(X)                                                    \
	X(int, LZ4_decompress_safe, (const char *, char *, int, int)) \
	X(int, LZ4_compressBound, (int))
#define BZ2_FNS(X)                                            \
	X(int, BZ2_bzDecompressInit, (bz_stream *, int, int)) \
	X(int, BZ2_bzDecompress, (bz_stream *))               \
	X(int, BZ2_bzDecompressEnd, (bz_stream *))

#define API_POINTER(ret, name, args) ret(*name) args;
#define API_NAME(ret, name, args)    #name,

static struct {
	ZLIB_FNS(API_POINTER)
} zlib;
static struct {
	LZMA_FNS(API_POINTER)
} lzma;
static struct {
	ZSTD_FNS(API_POINTER)
} zstd;
static struct {
	LZ4_FNS(API_POINTER)
} lz4;
static struct {
	BZ2_FNS(API_POINTER)
} bz2;

struct lazy_lib {
	const char *soname;
	const char *package; /* the Debian package that ships it, for the error */
	const char *const *symbols;
	size_t count;
	void *table; /* one of the structs above: `count` function pointers in order */
	bool loaded;
};

#define LAZY_LIB(so, pkg, api, tbl)                                                            \
	{                                                                                      \
		so, pkg, (const char *const[]){api(API_NAME)},                                 \
		    sizeof((const char *const[]){api(API_NAME)}) / sizeof(char *), &tbl, false \
	}

static struct lazy_lib lib_zlib = LAZY_LIB("libz.so.1", "zlib1g", ZLIB_FNS, zlib);
static struct lazy_lib lib_lzma = LAZY_LIB("liblzma.so.5", "liblzma5", LZMA_FNS, lzma);
static struct lazy_lib lib_zstd = LAZY_LIB("libzstd.so.1", "libzstd1", ZSTD_FNS, zstd);
static struct lazy_lib lib_lz4 = LAZY_LIB("liblz4.so.1", "liblz4-1", LZ4_FNS, lz4);
static struct lazy_lib lib_bz2 = LAZY_LIB("libbz2.so.1.0", "libbz2-1.0", BZ2_FNS, bz2);
#define LAZY_CHECK(api, tbl)                                                         \
	_Static_assert(sizeof(tbl) == sizeof((const char *const[]){api(API_NAME)}) / \
					  sizeof(char *) * sizeof(void *),           \
		       #tbl " has one pointer per symbol, with no padding")
LAZY_CHECK(ZLIB_FNS, zlib);
LAZY_CHECK(LZMA_FNS, lzma);
LAZY_CHECK(ZSTD_FNS, zstd);
LAZY_CHECK(LZ4_FNS, lz4);
LAZY_CHECK(BZ2_FNS, bz2);
static pthread_mutex_t lazy_lock = PTHREAD_MUTEX_INITIALIZER;

static int lazy_load(struct lazy_lib *l, struct errbuf *e)
{
	int ret = 0;
	pthread_mutex_lock(&lazy_lock);
	if (l->loaded)
		goto out;
	void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ret = errf(e, -ENOENT, "cannot load %s to unpack this kernel (%s); install %s",
			   l->soname, dlerror(), l->package);
		goto out;
	}
	for (size_t i = 0; i < l->count; i++) {
		void *fn = dlsym(h, l->symbols[i]);
		if (!fn) {
			ret = errf(e, -ENOENT, "%s lacks %s", l->soname, l->symbols[i]);
			dlclose(h);
			goto out;
		}
		/* POSIX lets dlsym's void * hold a function pointer. */
		memcpy((char *)l->table + i * sizeof(fn), &fn, sizeof(fn));
	}
	l->loaded = true;
out:
	pthread_mutex_unlock(&lazy_lock);
	return ret;
}

/* The kernel's "lz4 -l" legacy frame: a magic, then blocks of at most 8 MiB uncompressed,
 * each preceded by its little-endian compressed size. */
#define LZ4_LEGACY_MAGIC      0x184C2102u
#define LZ4_LEGACY_BLOCK_SIZE (8u << 20)

/* Kernel xz uses a 32 MiB dictionary and lzma -9 64 MiB; a hostile header could ask liblzma
 * for up to 4 GiB. */
#define LZMA_MEMLIMIT (96ull << 20)

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int has_prefix(const uint8_t *p, size_t len, const char *magic, size_t mlen)
{
	return len >= mlen && memcmp(p, magic, mlen) == 0;
}

enum payload_format payload_detect(const uint8_t *p, size_t len)
{
	if (!p)
		return PAYLOAD_UNKNOWN;
	if (has_prefix(p, len, "\x1f\x8b", 2))
		return PAYLOAD_GZIP;
	if (has_prefix(p, len, "\xfd\x37\x7a\x58\x5a\x00", 6))
		return PAYLOAD_XZ;
	if (has_prefix(p, len, "\x28\xb5\x2f\xfd", 4))
		return PAYLOAD_ZSTD;
	if (has_prefix(p, len, "\x02\x21\x4c\x18", 4))
		return PAYLOAD_LZ4;
	if (has_prefix(p, len, "\x5d\x00\x00", 3))
		return PAYLOAD_LZMA;
	if (has_prefix(p, len, "BZh", 3) && len >= 4 && p[3] >= '1' && p[3] <= '9')
		return PAYLOAD_BZIP2;
	if (has_prefix(p, len, "\x89\x4c\x5a\x4f", 4))
		return PAYLOAD_LZO;
	if (has_prefix(p, len, "\x7f\x45\x4c\x46", 4))
		return PAYLOAD_NONE;
	return PAYLOAD_UNKNOWN;
}

const char *payload_format_name(enum payload_format f)
{
	switch (f) {
	case PAYLOAD_GZIP:
		return "gzip";
	case PAYLOAD_BZIP2:
		return "bzip2";
	case PAYLOAD_LZMA:
		return "lzma";
	case PAYLOAD_XZ:
		return "xz";
	case PAYLOAD_LZO:
		return "lzo";
	case PAYLOAD_LZ4:
		return "lz4";
	case PAYLOAD_ZSTD:
		return "zstd";
	case PAYLOAD_NONE:
		return "uncompressed ELF";
	case PAYLOAD_UNKNOWN:
		break;
	}
	return "unknown";
}

/* Output buffer that never grows past limit. limit is max_out + 1 so a stream that produces
 * even one byte too many is caught without having to probe the decoder for more output. */
struct dcbuf {
	uint8_t *p;
	size_t len, cap, limit, max_out;
};

static int dcbuf_init(struct dcbuf *b, const uint8_t *in, size_t in_len, size_t max_out,
		      struct errbuf *e)
{
	memset(b, 0, sizeof(*b));
	b->max_out = max_out;
	b->limit = max_out == SIZE_MAX ? SIZE_MAX : max_out + 1;

	/* The mkpiggy trailer (uncompressed size) makes the common case a single allocation;
	 * a lying trailer only costs a realloc, and the limit still bounds it. */
	size_t want = 0;
	if (in_len >= 4)
		want = (size_t)le32_at(in + in_len - 4) + 1;
	if (want < 2 || want > b->limit) {
		if (__builtin_mul_overflow(in_len, (size_t)4, &want))
			want = b->limit;
	}
	if (want < 4096)
		want = 4096;
	if (want > b->limit)
		want = b->limit;
	b->p = malloc(want);
	if (!b->p)
		return errf(e, -ENOMEM, "out of memory allocating %zu bytes for the kernel", want);
	b->cap = want;
	return 0;
}

static int dcbuf_exceeded(const struct dcbuf *b, struct errbuf *e)
{
	return errf(e, -EFBIG, "decompressed kernel exceeds %zu bytes", b->max_out);
}

/* Makes at least `room` bytes available after len, or as many as the limit allows. */
static int dcbuf_reserve(struct dcbuf *b, size_t room, struct errbuf *e)
{
	if (b->cap - b->len >= room)
		return 0;
	if (b->cap >= b->limit)
		return dcbuf_exceeded(b, e);
	size_t need;
	if (__builtin_add_overflow(b->len, room, &need) || need > b->limit)
		need = b->limit;
	size_t ncap = b->cap;
	while (ncap < need)
		ncap = ncap > b->limit / 2 ? b->limit : ncap * 2;
	uint8_t *np = realloc(b->p, ncap);
	if (!np)
		return errf(e, -ENOMEM, "out of memory growing the kernel buffer to %zu bytes",
			    ncap);
	b->p = np;
	b->cap = ncap;
	return 0;
}

static int dcbuf_finish(struct dcbuf *b, uint8_t **out, size_t *out_len, struct errbuf *e)
{
	if (b->len > b->max_out) {
		free(b->p);
		return dcbuf_exceeded(b, e);
	}
	*out = b->p;
	*out_len = b->len;
	return 0;
}

static int decompress_gzip(const uint8_t *in, size_t in_len, struct dcbuf *b, struct errbuf *e)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (zlib.inflateInit2_(&zs, 16 + MAX_WBITS, ZLIB_VERSION, (int)sizeof(zs)) != Z_OK)
		return errf(e, -ENOMEM, "gzip: cannot initialise zlib");
	size_t in_pos = 0;
	int r = 0;
	for (;;) {
		if (zs.avail_in == 0 && in_pos < in_len) {
			size_t n = in_len - in_pos < UINT_MAX ? in_len - in_pos : UINT_MAX;
			zs.next_in = (Bytef *)(in + in_pos);
			zs.avail_in = (uInt)n;
			in_pos += n;
		}
		if ((r = dcbuf_reserve(b, 1, e)) < 0)
			break;
		size_t room = b->cap - b->len;
		zs.next_out = b->p + b->len;
		zs.avail_out = room < UINT_MAX ? (uInt)room : UINT_MAX;
		uInt before = zs.avail_out;
		int zr = zlib.inflate(&zs, Z_NO_FLUSH);
		b->len += before - zs.avail_out;
		if (zr == Z_STREAM_END)
			break;
		if (zr == Z_OK)
			continue;
		if (zr == Z_BUF_ERROR && zs.avail_out == 0)
			continue;
		if (zr == Z_BUF_ERROR) {
			r = errf(e, -EINVAL,
				 "gzip: compressed kernel is truncated after %zu input bytes",
				 in_pos - zs.avail_in);
			break;
		}
		r = errf(e, zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL,
			 "gzip: corrupt data at input byte %zu: %s", in_pos - zs.avail_in,
			 zs.msg ? zs.msg : "inflate failed");
		break;
	}
	zlib.inflateEnd(&zs);
	return r;
}

static const char *lzma_ret_name(lzma_ret r)
{
	switch (r) {
	case LZMA_MEM_ERROR:
		return "out of memory";
	case LZMA_MEMLIMIT_ERROR:
		return "dictionary larger than the 256 MiB limit";
	case LZMA_FORMAT_ERROR:
		return "bad header";
	case LZMA_OPTIONS_ERROR:
		return "unsupported options";
	case LZMA_DATA_ERROR:
		return "corrupt data";
	case LZMA_BUF_ERROR:
		return "data is truncated";
	case LZMA_UNSUPPORTED_CHECK:
		return "unsupported integrity check";
	default:
		return "decoder error";
	}
}

static int decompress_lzma(const uint8_t *in, size_t in_len, enum payload_format f, struct dcbuf *b,
			   struct errbuf *e)
{
	lzma_stream ls = LZMA_STREAM_INIT;
	const char *name = payload_format_name(f);
	/* Without LZMA_CONCATENATED the decoder stops at the end of the first stream, leaving
	 * the kernel's 4-byte size trailer unread instead of misparsing it as stream padding. */
	lzma_ret lr = f == PAYLOAD_XZ ? lzma.lzma_stream_decoder(&ls, LZMA_MEMLIMIT, 0)
				      : lzma.lzma_alone_decoder(&ls, LZMA_MEMLIMIT);
	if (lr != LZMA_OK)
		return errf(e, -ENOMEM, "%s: cannot initialise liblzma: %s", name,
			    lzma_ret_name(lr));
	ls.next_in = in;
	ls.avail_in = in_len;
	int r = 0;
	for (;;) {
		if ((r = dcbuf_reserve(b, 1, e)) < 0)
			break;
		ls.next_out = b->p + b->len;
		ls.avail_out = b->cap - b->len;
		size_t before = ls.avail_out;
		lr = lzma.lzma_code(&ls, LZMA_FINISH);
		b->len += before - ls.avail_out;
		if (lr == LZMA_STREAM_END)
			break;
		if (lr == LZMA_OK)
			continue;
		if (lr == LZMA_BUF_ERROR && ls.avail_out == 0)
			continue;
		r = errf(e, lr == LZMA_MEM_ERROR || lr == LZMA_MEMLIMIT_ERROR ? -ENOMEM : -EINVAL,
			 "%s: cannot decompress kernel at input byte %zu: %s", name,
			 in_len - ls.avail_in, lzma_ret_name(lr));
		break;
	}
	lzma.lzma_end(&ls);
	return r;
}

/* One shot into a buffer of the whole output limit (committed only as it is written): the
 * decoder then uses the output as its window and allocates none of its own, so a frame
 * header asking for a 2 GiB window costs nothing, and the output stops at the limit. */
static int decompress_zstd(const uint8_t *in, size_t in_len, struct dcbuf *b, struct errbuf *e)
{
	/* The kernel's 4-byte size trailer follows the frame; decode the frame only. */
	size_t frame = zstd.ZSTD_findFrameCompressedSize(in, in_len);
	if (zstd.ZSTD_isError(frame))
		return errf(e, -EINVAL, "zstd: cannot find the compressed kernel's frame: %s",
			    zstd.ZSTD_getErrorName(frame));
	int r = dcbuf_reserve(b, b->limit - b->len, e);
	if (r < 0)
		return r;
	ZSTD_DCtx *dc = zstd.ZSTD_createDCtx();
	if (!dc)
		return errf(e, -ENOMEM, "zstd: cannot create a decompression context");
	size_t zr = zstd.ZSTD_decompressDCtx(dc, b->p + b->len, b->cap - b->len, in, frame);
	zstd.ZSTD_freeDCtx(dc);
	if (zstd.ZSTD_isError(zr)) {
		if (zstd.ZSTD_getErrorCode(zr) == ZSTD_error_dstSize_tooSmall)
			return dcbuf_exceeded(b, e);
		return errf(e, -EINVAL, "zstd: cannot decompress kernel: %s",
			    zstd.ZSTD_getErrorName(zr));
	}
	b->len += zr;
	return 0;
}

static int lz4_block(const uint8_t *src, uint32_t csize, size_t in_off, struct dcbuf *b,
		     struct errbuf *e)
{
	size_t room = b->cap - b->len;
	int n;

	/* Try the space we already have: with an accurate size trailer the short last block
	 * fits exactly and the buffer is never doubled just to hold its worst case. */
	if (room > 0) {
		int dcap = (int)(room < LZ4_LEGACY_BLOCK_SIZE ? room : LZ4_LEGACY_BLOCK_SIZE);
		n = lz4.LZ4_decompress_safe((const char *)src, (char *)b->p + b->len, (int)csize,
					    dcap);
		if (n >= 0) {
			b->len += (size_t)n;
			return 0;
		}
		if (room >= LZ4_LEGACY_BLOCK_SIZE)
			return errf(e, -EINVAL, "lz4: corrupt block at input byte %zu", in_off);
	}
	if (b->cap < b->limit) {
		size_t left = b->limit - b->len;
		int r = dcbuf_reserve(
		    b, left < LZ4_LEGACY_BLOCK_SIZE ? left : LZ4_LEGACY_BLOCK_SIZE, e);
		if (r < 0)
			return r;
		room = b->cap - b->len;
		if (room >= LZ4_LEGACY_BLOCK_SIZE) {
			n = lz4.LZ4_decompress_safe((const char *)src, (char *)b->p + b->len,
						    (int)csize, LZ4_LEGACY_BLOCK_SIZE);
			if (n < 0)
				return errf(e, -EINVAL, "lz4: corrupt block at input byte %zu",
					    in_off);
			b->len += (size_t)n;
			return 0;
		}
	}
	/* At max_out, LZ4_decompress_safe cannot tell "output too small" from corruption, so
	 * decode into a full-size scratch block to report the right error. */
	char *tmp = malloc(LZ4_LEGACY_BLOCK_SIZE);
	if (!tmp)
		return errf(e, -ENOMEM, "lz4: out of memory for a %u-byte block",
			    LZ4_LEGACY_BLOCK_SIZE);
	int r = 0;
	n = lz4.LZ4_decompress_safe((const char *)src, tmp, (int)csize, LZ4_LEGACY_BLOCK_SIZE);
	if (n < 0)
		r = errf(e, -EINVAL, "lz4: corrupt block at input byte %zu", in_off);
	else if ((size_t)n > room)
		r = dcbuf_exceeded(b, e);
	else {
		memcpy(b->p + b->len, tmp, (size_t)n);
		b->len += (size_t)n;
	}
	free(tmp);
	return r;
}

static int decompress_lz4(const uint8_t *in, size_t in_len, struct dcbuf *b, struct errbuf *e)
{
	const uint32_t max_csize = (uint32_t)lz4.LZ4_compressBound(LZ4_LEGACY_BLOCK_SIZE);
	size_t pos = 0, blocks = 0;

	if (in_len < 4 || le32_at(in) != LZ4_LEGACY_MAGIC)
		return errf(e, -EINVAL, "lz4: payload does not start with the legacy frame magic");
	pos = 4;
	while (pos < in_len) {
		size_t left = in_len - pos;
		if (left < 4)
			return errf(e, -EINVAL,
				    "lz4: %zu stray bytes at input byte %zu after the last block",
				    left, pos);
		uint32_t csize = le32_at(in + pos);
		/* The kernel appends the uncompressed size after the frame. Four bytes left
		 * cannot be a block (it would have no data), so they are the trailer if they
		 * match; a mismatch means the frame was cut exactly at a block boundary. */
		if (left == 4 && blocks > 0) {
			if (csize != (uint32_t)b->len)
				return errf(
				    e, -EINVAL,
				    "lz4: compressed kernel is truncated: size trailer says "
				    "%u bytes but the blocks decompress to %zu",
				    csize, b->len);
			break;
		}
		pos += 4;
		if (csize == LZ4_LEGACY_MAGIC)
			continue; /* concatenated legacy frames */
		if (csize == 0 || csize > max_csize)
			return errf(e, -EINVAL,
				    "lz4: block size %u at input byte %zu is outside 1..%u", csize,
				    pos - 4, max_csize);
		if (csize > in_len - pos)
			return errf(e, -EINVAL,
				    "lz4: compressed kernel is truncated: block at input byte %zu "
				    "needs %u bytes, %zu remain",
				    pos - 4, csize, in_len - pos);
		int r = lz4_block(in + pos, csize, pos, b, e);
		if (r < 0)
			return r;
		pos += csize;
		blocks++;
	}
	if (!blocks)
		return errf(e, -EINVAL, "lz4: legacy frame contains no blocks");
	return 0;
}

static int decompress_bzip2(const uint8_t *in, size_t in_len, struct dcbuf *b, struct errbuf *e)
{
	bz_stream bs;
	memset(&bs, 0, sizeof(bs));
	int br = bz2.BZ2_bzDecompressInit(&bs, 0, 0);
	if (br != BZ_OK)
		return errf(e, -ENOMEM, "bzip2: cannot initialise libbz2 (error %d)", br);
	size_t in_pos = 0;
	int r = 0;
	for (;;) {
		if (bs.avail_in == 0 && in_pos < in_len) {
			size_t n = in_len - in_pos < UINT_MAX ? in_len - in_pos : UINT_MAX;
			bs.next_in = (char *)(in + in_pos);
			bs.avail_in = (unsigned int)n;
			in_pos += n;
		}
		if ((r = dcbuf_reserve(b, 1, e)) < 0)
			break;
		size_t room = b->cap - b->len;
		bs.next_out = (char *)b->p + b->len;
		bs.avail_out = room < UINT_MAX ? (unsigned int)room : UINT_MAX;
		unsigned int before = bs.avail_out;
		br = bz2.BZ2_bzDecompress(&bs);
		b->len += before - bs.avail_out;
		if (br == BZ_STREAM_END)
			break;
		if (br == BZ_OK) {
			/* With space left in the output and no input, libbz2 has nothing more to
			 * give: the stream ended early. */
			if (bs.avail_in == 0 && in_pos == in_len && bs.avail_out > 0) {
				r = errf(
				    e, -EINVAL,
				    "bzip2: compressed kernel is truncated after %zu input bytes",
				    in_pos);
				break;
			}
			continue;
		}
		r = errf(e, br == BZ_MEM_ERROR ? -ENOMEM : -EINVAL,
			 "bzip2: cannot decompress kernel at input byte %zu: %s",
			 in_pos - bs.avail_in,
			 br == BZ_DATA_ERROR_MAGIC ? "bad stream magic"
			 : br == BZ_MEM_ERROR	   ? "out of memory"
						   : "corrupt data");
		break;
	}
	bz2.BZ2_bzDecompressEnd(&bs);
	return r;
}

static int copy_elf(const uint8_t *in, size_t in_len, struct dcbuf *b, struct errbuf *e)
{
	int r = dcbuf_reserve(b, in_len, e);
	if (r < 0)
		return r;
	if (b->cap - b->len < in_len)
		return dcbuf_exceeded(b, e);
	memcpy(b->p + b->len, in, in_len);
	b->len += in_len;
	return 0;
}

int payload_decompress(const uint8_t *p, size_t len, enum payload_format f, size_t max_out,
		       uint8_t **out, size_t *out_len, struct errbuf *e)
{
	*out = NULL;
	*out_len = 0;
	if (!p || !len)
		return errf(e, -EINVAL, "kernel payload is empty");
	if (f == PAYLOAD_LZO)
		return errf(e, -ENOTSUP,
			    "lzo-compressed kernels are not supported: rebuild the kernel with "
			    "CONFIG_KERNEL_XZ, _GZIP, _ZSTD or _LZ4");
	if (f == PAYLOAD_UNKNOWN || f > PAYLOAD_NONE)
		return errf(
		    e, -EINVAL,
		    "kernel payload has an unknown compression format (first bytes %02x %02x "
		    "%02x %02x)",
		    p[0], len > 1 ? p[1] : 0, len > 2 ? p[2] : 0, len > 3 ? p[3] : 0);

	struct dcbuf b;
	int r = dcbuf_init(&b, p, len, max_out, e);
	if (r < 0)
		return r;
	static struct lazy_lib *const lib_for[PAYLOAD_NONE + 1] = {
	    [PAYLOAD_GZIP] = &lib_zlib, [PAYLOAD_XZ] = &lib_lzma, [PAYLOAD_LZMA] = &lib_lzma,
	    [PAYLOAD_ZSTD] = &lib_zstd, [PAYLOAD_LZ4] = &lib_lz4, [PAYLOAD_BZIP2] = &lib_bz2,
	};
	if (lib_for[f] && (r = lazy_load(lib_for[f], e)) < 0) {
		free(b.p);
		return r;
	}
	switch (f) {
	case PAYLOAD_GZIP:
		r = decompress_gzip(p, len, &b, e);
		break;
	case PAYLOAD_XZ:
	case PAYLOAD_LZMA:
		r = decompress_lzma(p, len, f, &b, e);
		break;
	case PAYLOAD_ZSTD:
		r = decompress_zstd(p, len, &b, e);
		break;
	case PAYLOAD_LZ4:
		r = decompress_lz4(p, len, &b, e);
		break;
	case PAYLOAD_BZIP2:
		r = decompress_bzip2(p, len, &b, e);
		break;
	default:
		r = copy_elf(p, len, &b, e);
		break;
	}
	if (r < 0) {
		free(b.p);
		return r;
	}
	return dcbuf_finish(&b, out, out_len, e);
}
