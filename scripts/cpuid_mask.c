/* An AVX2-only x86 CPU (no AVX-512, no VNNI, no AMX) at native speed, for timing the kernels that
 * such CPUs run (AMD Zen 2/3, Intel before Ice Lake) on a CPU that has more.
 *
 * LD_PRELOAD this library: its constructor turns on CPUID faulting (arch_prctl ARCH_SET_CPUID 0,
 * the kernel's `cpuid_fault` feature), so every later CPUID instruction in the process traps;
 * the SIGSEGV handler executes the real CPUID and clears the AVX-512, VNNI and AMX bits before
 * returning the answer. Libraries that pick kernels by CPUID after start-up (ONNX Runtime's MLAS,
 * OpenCV, NumPy) then pick their AVX2 ones. Threads inherit the setting; execve resets it, so
 * a child program needs LD_PRELOAD too (it is inherited through the environment).
 *
 * Only Python processes are masked (the executable's name starts with "python"): a test run's
 * other programs (Chromium, Mosquitto, qemu) inherit LD_PRELOAD and are left as they are.
 *
 * Limits: glibc's dynamic loader reads CPUID before any constructor runs (its memcpy may still use
 * AVX-512; use GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,... for that); a program that installs its
 * own SIGSEGV handler (Python's faulthandler, as pytest enables it) would take the trap instead.
 * EDGEFER_CPUID_MASK_QUIET unset: one line on stderr says the mask is on.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Bits an AVX2-only CPU does not have. Leaf 7 subleaf 0 EBX: AVX512F(16) DQ(17) IFMA(21) PF(26)
 * ER(27) CD(28) BW(30) VL(31). ECX: VBMI(1) VBMI2(6) VNNI(11) BITALG(12) VPOPCNTDQ(14).
 * EDX: 4VNNIW(2) 4FMAPS(3) VP2INTERSECT(8) AMX_BF16(22) AVX512_FP16(23) AMX_TILE(24) AMX_INT8(25).
 * Leaf 7 subleaf 1 EAX: AVX_VNNI(4) AVX512_BF16(5). Leaf 0xD: AMX/AVX-512 state components. */
static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~((1u << 4) | (1u << 5));
    } else if (leaf == 0xD && sub == 0) {
        r[0] &= ~((7u << 5) | (3u << 17)); /* opmask/ZMM and AMX tile state: not supported */
    } else if (leaf == 0x1D || leaf == 0x1E) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX palette and TMUL leaves */
    }
}

static void on_segv(int sig, siginfo_t *info, void *uctx) {
    ucontext_t *uc = (ucontext_t *)uctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: default action, with a core */
        signal(sig, SIG_DFL);
        (void)info;
        return; /* the instruction faults again, now fatally */
    }
    uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
    set_cpuid(1);
    real_cpuid(leaf, sub, r);
    set_cpuid(0);
    mask(leaf, sub, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return;
    exe[n] = 0;
    const char *base = strrchr(exe, '/');
    if (strncmp(base ? base + 1 : exe, "python", 6) != 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "cpuid_mask: this CPU or kernel has no CPUID faulting (cpuid_fault): cannot hide AVX-512/VNNI\n");
        _exit(69);
    }
    if (!getenv("EDGEFER_CPUID_MASK_QUIET"))
        fprintf(stderr, "cpuid_mask: AVX-512, VNNI and AMX hidden from CPUID (an AVX2-only CPU)\n");
}
