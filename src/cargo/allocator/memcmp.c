/* memcmp and bcmp for ironstar's private libc (allocator = "mimalloc"), in place of musl's
 * byte-at-a-time loop (zig's compiler_rt memcmp is the same loop). Sorted maps of strings spend
 * most of their time here once malloc is fast: compare 8 bytes at a time, the tail with one
 * overlapping word (its leading bytes are known equal), short inputs with two overlapping
 * 4-byte words. Compiled with -fno-builtin so the compiler does not turn it into a call to
 * itself. Both targets (x86_64, aarch64) are little-endian: a byte-swapped word compares as the
 * bytes do in order, the first difference deciding. */
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "memcmp.c assumes a little-endian target"
#endif

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

static inline uint32_t load32(const unsigned char *p)
{
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

static inline int order64(uint64_t a, uint64_t b)
{
	return __builtin_bswap64(a) < __builtin_bswap64(b) ? -1 : 1;
}

static inline int order32(uint32_t a, uint32_t b)
{
	return __builtin_bswap32(a) < __builtin_bswap32(b) ? -1 : 1;
}

int memcmp(const void *vl, const void *vr, size_t n)
{
	const unsigned char *l = vl, *r = vr;
	if (n >= 8) {
		size_t i = 0;
		for (; i + 8 <= n; i += 8) {
			uint64_t a = load64(l + i), b = load64(r + i);
			if (a != b)
				return order64(a, b);
		}
		if (i < n) {
			uint64_t a = load64(l + n - 8), b = load64(r + n - 8);
			if (a != b)
				return order64(a, b);
		}
		return 0;
	}
	if (n >= 4) {
		uint32_t a = load32(l), b = load32(r);
		if (a != b)
			return order32(a, b);
		a = load32(l + n - 4);
		b = load32(r + n - 4);
		return a == b ? 0 : order32(a, b);
	}
	for (; n; n--, l++, r++)
		if (*l != *r)
			return *l - *r;
	return 0;
}

int bcmp(const void *l, const void *r, size_t n)
{
	return memcmp(l, r, n);
}
