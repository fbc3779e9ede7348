#include "arch/x86/simd.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "arch/x86/emulate.h"

/* Table flags. */
#define F_W	0x001u	/* the memory operand is written (else read) */
#define F_A16	0x002u	/* a memory operand must be 16-byte aligned (#GP(0)) */
#define F_IB	0x004u	/* an imm8 follows */
#define F_GREG	0x008u	/* ModRM.reg names a general register */
#define F_GRM	0x010u	/* ModRM.rm (register form) names a general register */
#define F_SSE	0x020u	/* #UD with CR0.EM or !CR4.OSFXSR, #NM with CR0.TS */
#define F_X87	0x040u	/* #NM with CR0.EM or CR0.TS */
#define F_NOEXC 0x080u	/* raises no SIMD floating-point exception */
#define F_MXCSR 0x100u	/* loads MXCSR from memory (at mxcsr_off): #GP on reserved bits */
#define F_FXSR	0x200u	/* fxsave/fxrstor: needs CR4.OSFXSR to be exact here */
#define F_FLAGS 0x400u	/* (informational) writes arithmetic flags */
#define F_INT	0x800u	/* general-purpose instruction: no FPU checks */
#define F_LEA	0x1000u /* lea: the address itself, done here */
#define F_JCC	0x2000u /* jcc rel8/rel32 (no ModRM): the condition evaluated here */

/* Operand-size codes beyond plain byte counts. */
#define SZ_OPSIZE 200 /* 2, 4 or 8: by 0x66 / REX.W */
#define SZ_W48	  201 /* 4, or 8 with REX.W */

enum { M_ANY, M_MEM, M_REG };
enum { P_NONE, P_66, P_F3, P_F2 };

struct simd_entry {
	uint8_t map, pfx, op_first, op_last;
	int8_t reg;   /* required ModRM.reg (0-7), or -1 */
	int8_t rm;    /* required ModRM byte's rm with mod 3 (0-7), or -1 */
	uint8_t mode; /* M_ANY / M_MEM / M_REG */
	uint8_t size;
	uint32_t flags;
	const char *name;
};

#define A (F_SSE | F_A16)
#define S F_SSE
#define G (F_INT | F_GREG | F_GRM | F_FLAGS)
#define E(map, pfx, a, b, reg, mode, size, flags, name)          \
	{                                                        \
		map, pfx, a, b, reg, -1, mode, size, flags, name \
	}

static const struct simd_entry simd_table[] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, "none"}, /* kind 0: not an entry */
    /* 0f ae group: the FPU/SSE state instructions */
    E(1, P_NONE, 0xae, 0xae, 0, M_MEM, 0, F_X87 | F_FXSR | F_W | F_A16 | F_NOEXC, "fxsave"),
    E(1, P_NONE, 0xae, 0xae, 1, M_MEM, 0, F_X87 | F_FXSR | F_A16 | F_NOEXC | F_MXCSR, "fxrstor"),
    E(1, P_NONE, 0xae, 0xae, 2, M_MEM, 4, S | F_NOEXC | F_MXCSR, "ldmxcsr"),
    E(1, P_NONE, 0xae, 0xae, 3, M_MEM, 4, S | F_W | F_NOEXC, "stmxcsr"),
    /* x87 control instructions (they leave the last-instruction pointers alone) */
    E(0, P_NONE, 0xd9, 0xd9, 5, M_MEM, 2, F_X87 | F_NOEXC, "fldcw"),
    E(0, P_NONE, 0xd9, 0xd9, 7, M_MEM, 2, F_X87 | F_W | F_NOEXC, "fnstcw"),
    E(0, P_NONE, 0xdd, 0xdd, 7, M_MEM, 2, F_X87 | F_W | F_NOEXC, "fnstsw"),
    {0, P_NONE, 0xdb, 0xdb, 4, 3, M_REG, 0, F_X87 | F_NOEXC, "fninit"},
    {0, P_NONE, 0xdb, 0xdb, 4, 2, M_REG, 0, F_X87 | F_NOEXC, "fnclex"},
    {0, P_NONE, 0xdf, 0xdf, 4, 0, M_REG, 0, F_X87 | F_NOEXC, "fnstsw ax"},
    /* general-purpose instructions some hosts fail on */
    E(1, P_F3, 0xb8, 0xb8, -1, M_ANY, SZ_OPSIZE, G, "popcnt"),
    E(1, P_F3, 0xbc, 0xbd, -1, M_ANY, SZ_OPSIZE, G, "tzcnt/lzcnt"),
    E(2, P_F2, 0xf0, 0xf0, -1, M_ANY, 1, G, "crc32"),
    E(2, P_F2, 0xf1, 0xf1, -1, M_ANY, SZ_OPSIZE, G, "crc32"),
    /* general-purpose loads found inside SIMD loops (blake2s's message schedule): they
     * keep a run of completions going instead of ending it */
    E(1, P_NONE, 0xb6, 0xb6, -1, M_ANY, 1, G, "movzx"),
    E(1, P_NONE, 0xb7, 0xb7, -1, M_ANY, 2, G, "movzx"),
    /* the loop control between them (register forms only), so a whole loop of SIMD code
     * is one exit: add/sub/cmp imm8, cmp, test, inc/dec, lea, jcc */
    E(0, P_NONE, 0x83, 0x83, 0, M_REG, 0, (G & ~F_GREG) | F_IB, "loop control"),
    E(0, P_NONE, 0x83, 0x83, 5, M_REG, 0, (G & ~F_GREG) | F_IB, "loop control"),
    E(0, P_NONE, 0x83, 0x83, 7, M_REG, 0, (G & ~F_GREG) | F_IB, "loop control"),
    E(0, P_NONE, 0x39, 0x39, -1, M_REG, 0, G, "loop control"),
    E(0, P_NONE, 0x3b, 0x3b, -1, M_REG, 0, G, "loop control"),
    E(0, P_NONE, 0x85, 0x85, -1, M_REG, 0, G, "loop control"),
    E(0, P_NONE, 0xff, 0xff, 0, M_REG, 0, G & ~F_GREG, "loop control"),
    E(0, P_NONE, 0xff, 0xff, 1, M_REG, 0, G & ~F_GREG, "loop control"),
    E(0, P_NONE, 0x8d, 0x8d, -1, M_MEM, 0, F_INT | F_GREG | F_LEA, "loop control"),
    E(0, P_NONE, 0x70, 0x7f, -1, M_ANY, 0, F_INT | F_JCC, "loop control"),
    E(1, P_NONE, 0x80, 0x8f, -1, M_ANY, 0, F_INT | F_JCC, "loop control"),
    /* SSE, no prefix (packed single) */
    E(1, P_NONE, 0x10, 0x10, -1, M_ANY, 16, S, "movups"),
    E(1, P_NONE, 0x11, 0x11, -1, M_ANY, 16, S | F_W, "movups"),
    E(1, P_NONE, 0x12, 0x12, -1, M_ANY, 8, S, "movlps/movhlps"),
    E(1, P_NONE, 0x13, 0x13, -1, M_MEM, 8, S | F_W, "movlps"),
    E(1, P_NONE, 0x14, 0x15, -1, M_ANY, 16, A, "unpcklps/unpckhps"),
    E(1, P_NONE, 0x16, 0x16, -1, M_ANY, 8, S, "movhps/movlhps"),
    E(1, P_NONE, 0x17, 0x17, -1, M_MEM, 8, S | F_W, "movhps"),
    E(1, P_NONE, 0x28, 0x28, -1, M_ANY, 16, A, "movaps"),
    E(1, P_NONE, 0x29, 0x29, -1, M_ANY, 16, A | F_W, "movaps"),
    E(1, P_NONE, 0x2b, 0x2b, -1, M_MEM, 16, A | F_W, "movntps"),
    E(1, P_NONE, 0x2e, 0x2f, -1, M_ANY, 4, S | F_FLAGS, "ucomiss/comiss"),
    E(1, P_NONE, 0x50, 0x50, -1, M_REG, 0, S | F_GREG | F_NOEXC, "movmskps"),
    E(1, P_NONE, 0x51, 0x53, -1, M_ANY, 16, A, "sse arithmetic"),
    E(1, P_NONE, 0x54, 0x57, -1, M_ANY, 16, A, "sse logic"),
    E(1, P_NONE, 0x58, 0x59, -1, M_ANY, 16, A, "sse arithmetic"),
    E(1, P_NONE, 0x5a, 0x5a, -1, M_ANY, 8, S, "cvtps2pd"),
    E(1, P_NONE, 0x5b, 0x5f, -1, M_ANY, 16, A, "sse arithmetic"),
    E(1, P_NONE, 0xc2, 0xc2, -1, M_ANY, 16, A | F_IB, "cmpps"),
    E(1, P_NONE, 0xc6, 0xc6, -1, M_ANY, 16, A | F_IB, "shufps"),
    /* SSE2, 66 prefix (packed double, integer) */
    E(1, P_66, 0x10, 0x10, -1, M_ANY, 16, S, "movupd"),
    E(1, P_66, 0x11, 0x11, -1, M_ANY, 16, S | F_W, "movupd"),
    E(1, P_66, 0x12, 0x12, -1, M_MEM, 8, S, "movlpd"),
    E(1, P_66, 0x13, 0x13, -1, M_MEM, 8, S | F_W, "movlpd"),
    E(1, P_66, 0x14, 0x15, -1, M_ANY, 16, A, "unpcklpd/unpckhpd"),
    E(1, P_66, 0x16, 0x16, -1, M_MEM, 8, S, "movhpd"),
    E(1, P_66, 0x17, 0x17, -1, M_MEM, 8, S | F_W, "movhpd"),
    E(1, P_66, 0x28, 0x28, -1, M_ANY, 16, A, "movapd"),
    E(1, P_66, 0x29, 0x29, -1, M_ANY, 16, A | F_W, "movapd"),
    E(1, P_66, 0x2b, 0x2b, -1, M_MEM, 16, A | F_W, "movntpd"),
    E(1, P_66, 0x2e, 0x2f, -1, M_ANY, 8, S | F_FLAGS, "ucomisd/comisd"),
    E(1, P_66, 0x50, 0x50, -1, M_REG, 0, S | F_GREG | F_NOEXC, "movmskpd"),
    E(1, P_66, 0x51, 0x51, -1, M_ANY, 16, A, "sse2 arithmetic"),
    E(1, P_66, 0x54, 0x57, -1, M_ANY, 16, A, "sse2 logic"),
    E(1, P_66, 0x58, 0x5f, -1, M_ANY, 16, A, "sse2 arithmetic"),
    E(1, P_66, 0x60, 0x6d, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0x6e, 0x6e, -1, M_ANY, SZ_W48, S | F_GRM | F_NOEXC, "movd/movq to xmm"),
    E(1, P_66, 0x6f, 0x6f, -1, M_ANY, 16, A, "movdqa"),
    E(1, P_66, 0x70, 0x70, -1, M_ANY, 16, A | F_IB, "pshufd"),
    E(1, P_66, 0x71, 0x72, 2, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x71, 0x72, 4, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x71, 0x72, 6, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x73, 0x73, 2, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x73, 0x73, 3, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x73, 0x73, 6, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x73, 0x73, 7, M_REG, 0, S | F_IB, "sse2 shift"),
    E(1, P_66, 0x74, 0x76, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0x7c, 0x7d, -1, M_ANY, 16, A, "haddpd/hsubpd"),
    E(1, P_66, 0x7e, 0x7e, -1, M_ANY, SZ_W48, S | F_GRM | F_W | F_NOEXC, "movd/movq from xmm"),
    E(1, P_66, 0x7f, 0x7f, -1, M_ANY, 16, A | F_W, "movdqa"),
    E(1, P_66, 0xc2, 0xc2, -1, M_ANY, 16, A | F_IB, "cmppd"),
    E(1, P_66, 0xc4, 0xc4, -1, M_ANY, 2, S | F_GRM | F_IB, "pinsrw"),
    E(1, P_66, 0xc5, 0xc5, -1, M_REG, 0, S | F_GREG | F_IB, "pextrw"),
    E(1, P_66, 0xc6, 0xc6, -1, M_ANY, 16, A | F_IB, "shufpd"),
    E(1, P_66, 0xd0, 0xd5, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0xd6, 0xd6, -1, M_ANY, 8, S | F_W, "movq from xmm"),
    E(1, P_66, 0xd7, 0xd7, -1, M_REG, 0, S | F_GREG | F_NOEXC, "pmovmskb"),
    E(1, P_66, 0xd8, 0xe6, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0xe7, 0xe7, -1, M_MEM, 16, A | F_W, "movntdq"),
    E(1, P_66, 0xe8, 0xef, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0xf1, 0xf6, -1, M_ANY, 16, A, "sse2 integer"),
    E(1, P_66, 0xf8, 0xfe, -1, M_ANY, 16, A, "sse2 integer"),
    /* f3 prefix (scalar single) */
    E(1, P_F3, 0x10, 0x10, -1, M_ANY, 4, S, "movss"),
    E(1, P_F3, 0x11, 0x11, -1, M_ANY, 4, S | F_W, "movss"),
    E(1, P_F3, 0x12, 0x12, -1, M_ANY, 16, A, "movsldup"),
    E(1, P_F3, 0x16, 0x16, -1, M_ANY, 16, A, "movshdup"),
    E(1, P_F3, 0x2a, 0x2a, -1, M_ANY, SZ_W48, S | F_GRM, "cvtsi2ss"),
    E(1, P_F3, 0x2c, 0x2d, -1, M_ANY, 4, S | F_GREG, "cvtss2si"),
    E(1, P_F3, 0x51, 0x53, -1, M_ANY, 4, S, "sse scalar"),
    E(1, P_F3, 0x58, 0x5a, -1, M_ANY, 4, S, "sse scalar"),
    E(1, P_F3, 0x5b, 0x5b, -1, M_ANY, 16, A, "cvttps2dq"),
    E(1, P_F3, 0x5c, 0x5f, -1, M_ANY, 4, S, "sse scalar"),
    E(1, P_F3, 0x6f, 0x6f, -1, M_ANY, 16, S, "movdqu"),
    E(1, P_F3, 0x70, 0x70, -1, M_ANY, 16, A | F_IB, "pshufhw"),
    E(1, P_F3, 0x7e, 0x7e, -1, M_ANY, 8, S, "movq to xmm"),
    E(1, P_F3, 0x7f, 0x7f, -1, M_ANY, 16, S | F_W, "movdqu"),
    E(1, P_F3, 0xc2, 0xc2, -1, M_ANY, 4, S | F_IB, "cmpss"),
    E(1, P_F3, 0xe6, 0xe6, -1, M_ANY, 8, S, "cvtdq2pd"),
    /* f2 prefix (scalar double) */
    E(1, P_F2, 0x10, 0x10, -1, M_ANY, 8, S, "movsd"),
    E(1, P_F2, 0x11, 0x11, -1, M_ANY, 8, S | F_W, "movsd"),
    E(1, P_F2, 0x12, 0x12, -1, M_ANY, 8, S, "movddup"),
    E(1, P_F2, 0x2a, 0x2a, -1, M_ANY, SZ_W48, S | F_GRM, "cvtsi2sd"),
    E(1, P_F2, 0x2c, 0x2d, -1, M_ANY, 8, S | F_GREG, "cvtsd2si"),
    E(1, P_F2, 0x51, 0x51, -1, M_ANY, 8, S, "sse2 scalar"),
    E(1, P_F2, 0x58, 0x5a, -1, M_ANY, 8, S, "sse2 scalar"),
    E(1, P_F2, 0x5c, 0x5f, -1, M_ANY, 8, S, "sse2 scalar"),
    E(1, P_F2, 0x70, 0x70, -1, M_ANY, 16, A | F_IB, "pshuflw"),
    E(1, P_F2, 0x7c, 0x7d, -1, M_ANY, 16, A, "haddps/hsubps"),
    E(1, P_F2, 0xc2, 0xc2, -1, M_ANY, 8, S | F_IB, "cmpsd"),
    E(1, P_F2, 0xd0, 0xd0, -1, M_ANY, 16, A, "addsubps"),
    E(1, P_F2, 0xe6, 0xe6, -1, M_ANY, 16, A, "cvtpd2dq"),
    E(1, P_F2, 0xf0, 0xf0, -1, M_MEM, 16, S, "lddqu"),
    /* 0f 38 */
    E(2, P_66, 0x00, 0x0b, -1, M_ANY, 16, A, "ssse3"),
    E(2, P_66, 0x10, 0x10, -1, M_ANY, 16, A, "pblendvb"),
    E(2, P_66, 0x14, 0x15, -1, M_ANY, 16, A, "blendvps/pd"),
    E(2, P_66, 0x17, 0x17, -1, M_ANY, 16, A | F_FLAGS, "ptest"),
    E(2, P_66, 0x1c, 0x1e, -1, M_ANY, 16, A, "pabs"),
    E(2, P_66, 0x20, 0x20, -1, M_ANY, 8, S, "pmovsx"),
    E(2, P_66, 0x21, 0x21, -1, M_ANY, 4, S, "pmovsx"),
    E(2, P_66, 0x22, 0x22, -1, M_ANY, 2, S, "pmovsx"),
    E(2, P_66, 0x23, 0x23, -1, M_ANY, 8, S, "pmovsx"),
    E(2, P_66, 0x24, 0x24, -1, M_ANY, 4, S, "pmovsx"),
    E(2, P_66, 0x25, 0x25, -1, M_ANY, 8, S, "pmovsx"),
    E(2, P_66, 0x28, 0x29, -1, M_ANY, 16, A, "sse4.1 integer"),
    E(2, P_66, 0x2a, 0x2a, -1, M_MEM, 16, A, "movntdqa"),
    E(2, P_66, 0x2b, 0x2b, -1, M_ANY, 16, A, "packusdw"),
    E(2, P_66, 0x30, 0x30, -1, M_ANY, 8, S, "pmovzx"),
    E(2, P_66, 0x31, 0x31, -1, M_ANY, 4, S, "pmovzx"),
    E(2, P_66, 0x32, 0x32, -1, M_ANY, 2, S, "pmovzx"),
    E(2, P_66, 0x33, 0x33, -1, M_ANY, 8, S, "pmovzx"),
    E(2, P_66, 0x34, 0x34, -1, M_ANY, 4, S, "pmovzx"),
    E(2, P_66, 0x35, 0x35, -1, M_ANY, 8, S, "pmovzx"),
    E(2, P_66, 0x37, 0x41, -1, M_ANY, 16, A, "sse4.1 integer"),
    E(2, P_66, 0xdb, 0xdf, -1, M_ANY, 16, A, "aes"),
    E(2, P_NONE, 0xc8, 0xcd, -1, M_ANY, 16, A, "sha"),
    /* 0f 3a (all with imm8) */
    E(3, P_66, 0x08, 0x09, -1, M_ANY, 16, A | F_IB, "roundps/pd"),
    E(3, P_66, 0x0a, 0x0a, -1, M_ANY, 4, S | F_IB, "roundss"),
    E(3, P_66, 0x0b, 0x0b, -1, M_ANY, 8, S | F_IB, "roundsd"),
    E(3, P_66, 0x0c, 0x0f, -1, M_ANY, 16, A | F_IB, "blend/palignr"),
    E(3, P_66, 0x14, 0x14, -1, M_ANY, 1, S | F_GRM | F_W | F_IB, "pextrb"),
    E(3, P_66, 0x15, 0x15, -1, M_ANY, 2, S | F_GRM | F_W | F_IB, "pextrw"),
    E(3, P_66, 0x16, 0x16, -1, M_ANY, SZ_W48, S | F_GRM | F_W | F_IB, "pextrd/q"),
    E(3, P_66, 0x17, 0x17, -1, M_ANY, 4, S | F_GRM | F_W | F_IB, "extractps"),
    E(3, P_66, 0x20, 0x20, -1, M_ANY, 1, S | F_GRM | F_IB, "pinsrb"),
    E(3, P_66, 0x21, 0x21, -1, M_ANY, 4, S | F_IB, "insertps"),
    E(3, P_66, 0x22, 0x22, -1, M_ANY, SZ_W48, S | F_GRM | F_IB, "pinsrd/q"),
    E(3, P_66, 0x40, 0x42, -1, M_ANY, 16, A | F_IB, "dpps/dppd/mpsadbw"),
    E(3, P_66, 0x44, 0x44, -1, M_ANY, 16, A | F_IB, "pclmulqdq"),
    E(3, P_66, 0x60, 0x63, -1, M_ANY, 16, S | F_IB | F_FLAGS, "pcmpestr/pcmpistr"),
    E(3, P_66, 0xdf, 0xdf, -1, M_ANY, 16, A | F_IB, "aeskeygenassist"),
    E(3, P_NONE, 0xcc, 0xcc, -1, M_ANY, 16, A | F_IB, "sha1rnds4"),
};

_Static_assert(sizeof(simd_table) / sizeof(simd_table[0]) <= X86_SIMD_KINDS,
	       "X86_SIMD_KINDS too small for the table");

const char *x86_simd_kind_name(unsigned kind)
{
	if (kind == 0 || kind >= sizeof(simd_table) / sizeof(simd_table[0]))
		return "unknown";
	return simd_table[kind].name;
}

static const struct simd_entry *find_entry(unsigned map, unsigned pfx, uint8_t op, uint8_t modrm,
					   unsigned *kind)
{
	unsigned mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
	for (unsigned i = 1; i < sizeof(simd_table) / sizeof(simd_table[0]); i++) {
		const struct simd_entry *e = &simd_table[i];
		if (e->map != map || e->pfx != pfx || op < e->op_first || op > e->op_last)
			continue;
		if (e->reg >= 0 && (unsigned)e->reg != reg)
			continue;
		if (e->rm >= 0 && (unsigned)e->rm != rm)
			continue;
		if ((e->mode == M_MEM && mod == 3) || (e->mode == M_REG && mod != 3))
			continue;
		*kind = i;
		return e;
	}
	return NULL;
}

bool x86_simd_decode(const uint8_t *code, size_t n, struct x86_simd_insn *out)
{
	size_t i = 0;
	unsigned pfx = P_NONE;
	bool has_66 = false;

	memset(out, 0, sizeof(*out));
	out->base = out->index = -1;
	out->imm8 = -1;
	for (; i < n && i < 14; i++) {
		uint8_t p = code[i];
		if (p == 0x66)
			has_66 = true;
		else if (p == 0xf3)
			pfx = P_F3;
		else if (p == 0xf2)
			pfx = P_F2;
		else if (p == 0x64 || p == 0x65)
			out->segment = p == 0x64 ? 4 : 5;
		else if (p == 0x2e || p == 0x3e || p == 0x26 || p == 0x36)
			continue;
		else
			break; /* lock (0xf0) and 0x67 end the prefixes and are refused below */
	}
	if (pfx == P_NONE && has_66)
		pfx = P_66;
	out->has_66 = has_66;
	out->prefix_len = i;
	if (i < n && (code[i] & 0xf0) == 0x40)
		out->rex = code[i++];
	out->opcode_off = i;
	if (i >= n)
		return false;
	if (code[i] == 0x0f) {
		if (++i >= n)
			return false;
		if (code[i] == 0x38 || code[i] == 0x3a) {
			out->map = code[i] == 0x38 ? 2 : 3;
			i++;
		} else {
			out->map = 1;
		}
	} else if ((code[i] >= 0xd8 && code[i] <= 0xdf) || code[i] == 0x83 || code[i] == 0x39 ||
		   code[i] == 0x3b || code[i] == 0x85 || code[i] == 0xff || code[i] == 0x8d ||
		   (code[i] >= 0x70 && code[i] <= 0x7f)) {
		out->map = 0;
	} else {
		return false; /* includes VEX (c4/c5), lock, 0x67 */
	}
	if (i >= n)
		return false;
	out->opcode = code[i++];
	bool jcc8 = out->map == 0 && out->opcode >= 0x70 && out->opcode <= 0x7f;
	bool jcc32 = out->map == 1 && out->opcode >= 0x80 && out->opcode <= 0x8f;
	if (jcc8 || jcc32) {
		const struct simd_entry *j = find_entry(out->map, pfx, out->opcode, 0, &out->kind);
		size_t rel = jcc8 ? 1 : 4;
		if (!j || pfx != P_NONE || i + rel > n)
			return false;
		if (jcc8) {
			out->disp = (int8_t)code[i];
		} else {
			int32_t d;
			memcpy(&d, code + i, 4);
			out->disp = d;
		}
		i += rel;
		out->flags = j->flags;
		out->length = (unsigned)i;
		memcpy(out->code, code, i);
		return true;
	}
	if (i >= n)
		return false;
	out->modrm_off = i;
	uint8_t modrm = code[i++];
	const struct simd_entry *e = find_entry(out->map, pfx, out->opcode, modrm, &out->kind);
	if (!e)
		return false;
	if (e->flags & F_INT && out->map == 2 && has_66 && out->opcode == 0xf0)
		return false; /* crc32 r32, r/m8 with 0x66 is still 8-bit; keep it simple */
	unsigned mod = modrm >> 6, rm = modrm & 7;
	uint8_t rex = out->rex;
	out->reg = ((modrm >> 3) & 7) | ((rex & 4u) << 1);
	out->rm = rm | ((rex & 1u) << 3);
	out->flags = e->flags;
	out->mem = mod != 3;
	if (out->mem) {
		size_t disp_len = mod == 1 ? 1 : mod == 2 ? 4 : 0;
		if (rm == 4) {
			if (i >= n)
				return false;
			uint8_t sib = code[i++];
			unsigned base = sib & 7, index = ((sib >> 3) & 7) | ((rex & 0x2u) << 2);
			out->scale = 1u << (sib >> 6);
			if (index != 4)
				out->index = (int)index;
			if (base == 5 && mod == 0)
				disp_len = 4;
			else
				out->base = (int)(base | ((rex & 0x1u) << 3));
		} else if (rm == 5 && mod == 0) {
			out->rip_relative = true;
			disp_len = 4;
		} else {
			out->base = (int)out->rm;
		}
		if (i + disp_len > n)
			return false;
		if (disp_len == 1) {
			out->disp = (int8_t)code[i];
		} else if (disp_len == 4) {
			int32_t d;
			memcpy(&d, code + i, 4);
			out->disp = d;
		}
		i += disp_len;
		unsigned size = e->size;
		if (size == SZ_OPSIZE)
			size = (rex & 8) ? 8 : has_66 ? 2 : 4;
		else if (size == SZ_W48)
			size = (rex & 8) ? 8 : 4;
		else if (size == 0 && (e->flags & F_FXSR))
			size = 512;
		out->mem_size = size;
		out->mem_write = e->flags & F_W;
		out->align = (e->flags & F_A16) ? 16 : 1;
	}
	if (e->flags & F_IB) {
		if (i >= n)
			return false;
		out->imm8 = code[i++];
	}
	/* rsp is never handed to the host instruction as an operand. */
	if ((e->flags & F_GREG) && out->reg == 4)
		return false;
	if ((e->flags & F_GRM) && !out->mem && out->rm == 4)
		return false;
	if (i > sizeof(out->code))
		return false;
	out->length = (unsigned)i;
	memcpy(out->code, code, i);
	return true;
}

/* ---- running it on the host ---- */

/* What the stub reads and writes; offsets are baked into the generated code. */
struct simd_ctx {
	uint8_t guest_fx[512]; /* 0 */
	uint8_t host_fx[512];  /* 512 */
	uint64_t gpr[16];      /* 1024 */
	uint64_t rflags;       /* 1152: in, the guest's status flags; out, the host's */
	uint64_t mem;	       /* 1160: the bounce buffer */
} __attribute__((aligned(64)));

#define CTX_HOST_FX 512
#define CTX_GPR	    1024
#define CTX_RFLAGS  1152
#define CTX_MEM	    1160
_Static_assert(__builtin_offsetof(struct simd_ctx, host_fx) == CTX_HOST_FX, "layout");
_Static_assert(__builtin_offsetof(struct simd_ctx, gpr) == CTX_GPR, "layout");
_Static_assert(__builtin_offsetof(struct simd_ctx, rflags) == CTX_RFLAGS, "layout");
_Static_assert(__builtin_offsetof(struct simd_ctx, mem) == CTX_MEM, "layout");

#define RFLAGS_STATUS 0x8d5ull /* CF PF AF ZF SF OF */

struct emitter {
	uint8_t *p;
	size_t n, cap;
};

static void emit(struct emitter *e, const uint8_t *bytes, size_t len)
{
	if (e->n + len <= e->cap)
		memcpy(e->p + e->n, bytes, len);
	e->n += len;
}

static void emit1(struct emitter *e, uint8_t b)
{
	emit(e, &b, 1);
}

static void emit32(struct emitter *e, uint32_t v)
{
	emit(e, (const uint8_t *)&v, 4);
}

/* mov reg, [rdi + disp32] (load) or mov [rdi + disp32], reg (store) */
static void emit_mov_rdi(struct emitter *e, unsigned reg, uint32_t disp, bool store)
{
	emit1(e, 0x48 | (reg >= 8 ? 4 : 0));
	emit1(e, store ? 0x89 : 0x8b);
	emit1(e, 0x80 | ((reg & 7) << 3) | 7);
	emit32(e, disp);
}

/* The guest instruction, its memory operand (if any) replaced by [scratch]. */
static void emit_insn(struct emitter *e, const uint8_t *code, const struct x86_simd_insn *in,
		      unsigned scratch)
{
	for (size_t i = 0; i < in->prefix_len; i++) {
		uint8_t p = code[i];
		if (p == 0x66 || p == 0xf2 || p == 0xf3)
			emit1(e, p); /* order kept: the last f2/f3 is the mandatory one */
	}
	uint8_t rex = in->rex;
	if (in->mem)
		rex = 0x40 | (rex & 0x0c) | (scratch >= 8 ? 1 : 0); /* keep W, R; drop X, B */
	if (rex)
		emit1(e, rex);
	emit(e, code + in->opcode_off, in->modrm_off - in->opcode_off);
	uint8_t modrm = code[in->modrm_off];
	if (in->mem)
		modrm = (uint8_t)((modrm & 0x38) | (scratch & 7)); /* mod 00: [scratch] */
	emit1(e, modrm);
	if (in->imm8 >= 0)
		emit1(e, (uint8_t)in->imm8);
}

/* Generates: save callee-saved registers and the host FPU state, load the guest's, its
 * status flags and general registers (scratch = the bounce pointer), run the instruction,
 * store everything back, restore the host's. */
static size_t build_stub(uint8_t *buf, size_t cap, const uint8_t *code,
			 const struct x86_simd_insn *in, unsigned scratch)
{
	struct emitter e = {buf, 0, cap};
	static const uint8_t prologue[] = {0x53, 0x55, 0x41, 0x54, 0x41,
					   0x55, 0x41, 0x56, 0x41, 0x57};
	emit(&e, prologue, sizeof(prologue));
	emit(&e, (const uint8_t[]){0x48, 0x0f, 0xae, 0x87}, 4); /* fxsave64 [rdi+512] */
	emit32(&e, CTX_HOST_FX);
	emit(&e, (const uint8_t[]){0x48, 0x0f, 0xae, 0x0f}, 4); /* fxrstor64 [rdi] */
	emit1(&e, 0x57);					/* push rdi */
	emit_mov_rdi(&e, 0, CTX_RFLAGS, false);			/* mov rax, [rdi+rflags] */
	emit1(&e, 0x9c);					/* pushfq */
	emit(&e, (const uint8_t[]){0x48, 0x81, 0x24, 0x24}, 4); /* and qword [rsp], ~status */
	emit32(&e, (uint32_t)~RFLAGS_STATUS);
	emit(&e, (const uint8_t[]){0x48, 0x09, 0x04, 0x24}, 4); /* or [rsp], rax */
	emit1(&e, 0x9d);					/* popfq */
	for (unsigned r = 0; r < 16; r++)
		if (r != 4 && r != 7 && r != scratch)
			emit_mov_rdi(&e, r, CTX_GPR + 8 * r, false);
	if (in->mem)
		emit_mov_rdi(&e, scratch, CTX_MEM, false);
	emit_mov_rdi(&e, 7, CTX_GPR + 8 * 7, false); /* rdi last */
	emit_insn(&e, code, in, scratch);
	emit(&e, (const uint8_t[]){0x48, 0x87, 0x3c, 0x24}, 4); /* xchg [rsp], rdi */
	for (unsigned r = 0; r < 16; r++)
		if (r != 4 && r != 7 && r != scratch)
			emit_mov_rdi(&e, r, CTX_GPR + 8 * r, true);
	emit(&e, (const uint8_t[]){0x8f, 0x87}, 2); /* pop qword [rdi+gpr.rdi] */
	emit32(&e, CTX_GPR + 8 * 7);
	emit(&e, (const uint8_t[]){0x9c, 0x58}, 2); /* pushfq; pop rax */
	emit_mov_rdi(&e, 0, CTX_RFLAGS, true);
	emit(&e, (const uint8_t[]){0x48, 0x0f, 0xae, 0x07}, 4); /* fxsave64 [rdi] */
	emit(&e, (const uint8_t[]){0x48, 0x0f, 0xae, 0x8f}, 4); /* fxrstor64 [rdi+512] */
	emit32(&e, CTX_HOST_FX);
	static const uint8_t epilogue[] = {0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d,
					   0x41, 0x5c, 0x5d, 0x5b, 0xc3};
	emit(&e, epilogue, sizeof(epilogue));
	return e.n;
}

#define STUB_MAX 512

/* The register that points at the bounce buffer: one the instruction cannot name (not its
 * ModRM.reg, none of the implicit operands rax, rcx, rdx, rdi, xmm0); 16 (none) without a
 * memory operand, so every general register is the guest's. */
static unsigned scratch_register(const struct x86_simd_insn *in)
{
	if (!in->mem)
		return 16;
	return in->reg == 11 ? 10 : 11;
}

int x86_simd_area_open(struct x86_simd_area *a)
{
	a->used = 0;
	a->base = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (a->base == MAP_FAILED) {
		a->base = NULL;
		return -errno;
	}
	return 0;
}

void x86_simd_area_close(struct x86_simd_area *a)
{
	if (a->base)
		munmap(a->base, 4096);
	a->base = NULL;
}

static int run_on_host(const uint8_t *code, const struct x86_simd_insn *in, struct simd_ctx *ctx,
		       struct x86_simd_area *area)
{
	unsigned scratch = scratch_register(in);
	uint8_t buf[STUB_MAX];
	size_t len = build_stub(buf, sizeof(buf), code, in, scratch);
	if (len > sizeof(buf))
		return -E2BIG;
	if (area && area->base) {
		/* One slot, rewritten only when the code differs (a loop's instructions come
		 * back): x86 keeps instruction fetch coherent with this thread's own stores
		 * once it jumps to them. */
		if (area->used != len || memcmp(area->base, buf, len) != 0) {
			memcpy(area->base, buf, len);
			area->used = (unsigned)len;
		}
		((void (*)(struct simd_ctx *))(void *)area->base)(ctx);
		return 0;
	}
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return -errno;
	memcpy(page, buf, len);
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC) < 0) {
		int err = -errno;
		munmap(page, 4096);
		return err;
	}
	((void (*)(struct simd_ctx *))page)(ctx);
	munmap(page, 4096);
	return 0;
}

static uint64_t *gpr_slot(struct kvm_regs *r, unsigned n)
{
	uint64_t *v[16] = {
	    (uint64_t *)&r->rax, (uint64_t *)&r->rcx, (uint64_t *)&r->rdx, (uint64_t *)&r->rbx,
	    (uint64_t *)&r->rsp, (uint64_t *)&r->rbp, (uint64_t *)&r->rsi, (uint64_t *)&r->rdi,
	    (uint64_t *)&r->r8,	 (uint64_t *)&r->r9,  (uint64_t *)&r->r10, (uint64_t *)&r->r11,
	    (uint64_t *)&r->r12, (uint64_t *)&r->r13, (uint64_t *)&r->r14, (uint64_t *)&r->r15};
	return v[n & 15];
}

#define CR0_EM	     (1ull << 2)
#define CR0_TS	     (1ull << 3)
#define CR4_OSFXSR   (1ull << 9)
#define EFER_LMA     (1ull << 10)
#define VEC_UD	     6
#define VEC_NM	     7
#define VEC_SS	     12
#define VEC_GP	     13
#define VEC_PF	     14
#define FX_MXCSR     24
#define FX_MXCSR_MSK 28

/* Jcc's condition codes (the low opcode nibble) on RFLAGS. */
static bool condition_holds(unsigned cc, uint64_t f)
{
	bool cf = f & 1, pf = f & 4, zf = f & 0x40, sf = f & 0x80, of = f & 0x800;
	bool r;
	switch (cc >> 1) {
	case 0:
		r = of;
		break;
	case 1:
		r = cf;
		break;
	case 2:
		r = zf;
		break;
	case 3:
		r = cf || zf;
		break;
	case 4:
		r = sf;
		break;
	case 5:
		r = pf;
		break;
	case 6:
		r = sf != of;
		break;
	default:
		r = zf || sf != of;
		break;
	}
	return (cc & 1) ? !r : r;
}

static enum x86_simd_outcome fault_with(struct x86_fault *f, unsigned vector, bool has_error,
					uint32_t error)
{
	memset(f, 0, sizeof(*f));
	f->vector = vector;
	f->has_error_code = has_error;
	f->error_code = error;
	return X86_SIMD_FAULT;
}

/* The host pointers of [linear, linear+size) (at most two pages), or a fault. */
static enum x86_simd_outcome map_operand(const struct x86_simd_insn *in,
					 const struct x86_simd_vcpu *v, const struct guest_mem *mem,
					 uint64_t linear, uint8_t *parts[2], size_t lens[2],
					 struct x86_fault *f)
{
	const struct kvm_sregs *s = &v->sregs;
	size_t first = 4096 - (linear & 4095);
	if (first > in->mem_size)
		first = in->mem_size;
	lens[0] = first;
	lens[1] = in->mem_size - first;
	bool stack = in->base == 4 || in->base == 5;
	for (int k = 0; k < 2; k++) {
		parts[k] = NULL;
		if (lens[k] == 0)
			continue;
		uint64_t a = linear + (k ? first : 0);
		uint64_t phys;
		uint32_t err;
		int ret = x86_walk_supervisor(mem, s->cr0, s->cr3, s->cr4, v->regs.rflags, a,
					      in->mem_write, &phys, &err);
		if (ret == -EINVAL)
			return fault_with(f, stack ? VEC_SS : VEC_GP, true, 0);
		if (ret == -EFAULT) {
			fault_with(f, VEC_PF, true, err);
			f->set_cr2 = true;
			f->cr2 = a;
			return X86_SIMD_FAULT;
		}
		if (ret < 0)
			return X86_SIMD_NOT_DONE;
		parts[k] = gpa_to_hva(mem, phys, lens[k]);
		if (!parts[k])
			return X86_SIMD_NOT_DONE; /* MMIO or beyond RAM */
	}
	return X86_SIMD_DONE;
}

enum x86_simd_outcome x86_simd_complete(const struct x86_simd_insn *in, struct x86_simd_vcpu *v,
					const struct guest_mem *mem, struct x86_fault *f,
					struct x86_simd_area *area)
{
	const struct kvm_sregs *s = &v->sregs;
	unsigned flags = in->flags;
	uint32_t mxcsr;
	memcpy(&mxcsr, v->fx + FX_MXCSR, 4);

	/* 64-bit ring 0 only: the decoder knows 64-bit encodings, and ring 3 runs natively. */
	if (!(s->efer & EFER_LMA) || !s->cs.l || (s->cs.selector & 3))
		return X86_SIMD_NOT_DONE;
	if (flags & F_JCC) {
		v->regs.rip += in->length;
		if (condition_holds(in->opcode & 15, v->regs.rflags))
			v->regs.rip += (uint64_t)in->disp;
		return X86_SIMD_DONE;
	}
	if (flags & F_LEA) {
		if (in->has_66 || in->segment) /* segment overrides: leave them to the report */
			return X86_SIMD_NOT_DONE;
		const struct x86_cmpxchg_insn ea = {
		    .length = in->length,
		    .base = in->base,
		    .index = in->index,
		    .scale = in->scale,
		    .disp = in->disp,
		    .rip_relative = in->rip_relative,
		};
		uint64_t a = x86_cmpxchg_address(&ea, &v->regs, s);
		*gpr_slot(&v->regs, in->reg) = (in->rex & 8) ? a : (uint32_t)a;
		v->regs.rip += in->length;
		return X86_SIMD_DONE;
	}
	if (flags & F_SSE) {
		if ((s->cr0 & CR0_EM) || !(s->cr4 & CR4_OSFXSR))
			return fault_with(f, VEC_UD, false, 0);
		if (s->cr0 & CR0_TS)
			return fault_with(f, VEC_NM, false, 0);
	} else if (flags & F_X87) {
		if (s->cr0 & (CR0_EM | CR0_TS))
			return fault_with(f, VEC_NM, false, 0);
		if ((flags & F_FXSR) && !(s->cr4 & CR4_OSFXSR))
			return X86_SIMD_NOT_DONE; /* fxsave without XMM: not what the host does */
	}
	/* An unmasked SIMD exception would become the host's SIGFPE: leave it (Linux keeps
	 * them masked in the kernel). */
	if ((flags & F_SSE) && !(flags & F_NOEXC) && (mxcsr & 0x1f80) != 0x1f80)
		return X86_SIMD_NOT_DONE;

	struct simd_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	uint8_t bounce[512 + 64] __attribute__((aligned(64)));
	memset(bounce, 0, sizeof(bounce));
	uint8_t *parts[2] = {NULL, NULL};
	size_t lens[2] = {0, 0};
	if (in->mem) {
		const struct x86_cmpxchg_insn addr = {
		    .length = in->length,
		    .base = in->base,
		    .index = in->index,
		    .scale = in->scale,
		    .disp = in->disp,
		    .rip_relative = in->rip_relative,
		    .segment = in->segment,
		};
		uint64_t linear = x86_cmpxchg_address(&addr, &v->regs, s);
		if (linear % in->align)
			return fault_with(f, VEC_GP, true, 0);
		enum x86_simd_outcome o = map_operand(in, v, mem, linear, parts, lens, f);
		if (o != X86_SIMD_DONE)
			return o;
		memcpy(bounce, parts[0], lens[0]);
		if (lens[1])
			memcpy(bounce + lens[0], parts[1], lens[1]);
		ctx.mem = (uint64_t)(uintptr_t)bounce;
	}
	if (flags & F_MXCSR) {
		uint32_t mask, value;
		memcpy(&mask, v->fx + FX_MXCSR_MSK, 4);
		if (mask == 0)
			mask = 0xffbf; /* the architectural default when the field reads 0 */
		memcpy(&value, bounce + (in->mem_size == 4 ? 0 : FX_MXCSR), 4);
		if (value & ~mask)
			return fault_with(f, VEC_GP, true, 0);
	}

	memcpy(ctx.guest_fx, v->fx, sizeof(ctx.guest_fx));
	for (unsigned r = 0; r < 16; r++)
		ctx.gpr[r] = *gpr_slot(&v->regs, r);
	ctx.rflags = v->regs.rflags & RFLAGS_STATUS;
	const uint8_t *code = in->code;
	if (run_on_host(code, in, &ctx, area) < 0)
		return X86_SIMD_NOT_DONE;

	if (in->mem && in->mem_write) {
		/* fxsave leaves bytes 464-511 alone: so does this copy-back. */
		size_t write = in->mem_size == 512 ? 464 : in->mem_size;
		size_t a = lens[0] < write ? lens[0] : write;
		memcpy(parts[0], bounce, a);
		if (write > a)
			memcpy(parts[1], bounce + a, write - a);
	}
	memcpy(v->fx, ctx.guest_fx, sizeof(ctx.guest_fx));
	unsigned scratch = scratch_register(in);
	for (unsigned r = 0; r < 16; r++)
		if (r != 4 && r != scratch)
			*gpr_slot(&v->regs, r) = ctx.gpr[r];
	v->regs.rflags = (v->regs.rflags & ~RFLAGS_STATUS) | (ctx.rflags & RFLAGS_STATUS);
	v->regs.rip += in->length;
	return X86_SIMD_DONE;
}
