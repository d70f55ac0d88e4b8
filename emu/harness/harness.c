/* hotcall emulation harness.
 *
 * Reads one program from stdin, runs its operations in order and writes one
 * result record per operation to stdout. Built statically for the ISA under
 * test (aarch64 with gcc-aarch64-linux-gnu) and run under qemu-user, so the
 * code it maps and calls executes as that ISA's code. The Rust side
 * (`hotcall_emu`) builds programs, starts this process and checks the
 * results; nothing here decides whether a result is right.
 *
 * Input: words of 64 bits, little-endian: MAGIC, the number of words that
 * follow, then operations, each `tag, payload...`:
 *   OP_INFO                                 -> harness addresses and targets
 *   OP_MAP    addr len                      -> mmap(addr, len, rwx, FIXED_NOREPLACE)
 *   OP_WRITE  addr nbytes data[ceil(n/8)]   -> memcpy (a fault is reported)
 *   OP_LAYOUT nstack x[8] v[8] stack[nstack]-> keeps an argument register file
 *   OP_CALL   fn layout set_x0 x0           -> calls fn with that register file
 * Output: per operation `tag, nwords, words...`.
 *
 * A call runs with canaries in every callee-saved register and reports which
 * ones the callee did not restore, and whether it gave back the stack
 * pointer. A fault (SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE) or a call that
 * runs for more than HC_CALL_SECONDS is reported as that call's result and
 * the program goes on with the next operation. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "model.h"

#define MAGIC 0x3130554d45434855ull /* "HCEMU01" */
enum { OP_INFO = 1, OP_MAP = 2, OP_WRITE = 3, OP_LAYOUT = 4, OP_CALL = 5 };
#define HC_MAX_STACK 16
#define HC_CALL_SECONDS 10

#if defined(__aarch64__)
#define HC_CALLEE_SAVED 19 /* x19-x29, d8-d15 */
#elif defined(__x86_64__)
#define HC_CALLEE_SAVED 6 /* rbx, rbp, r12-r15 */
#else
#error "the harness supports aarch64 and x86_64"
#endif

/* Shared with call_<isa>.S: the offsets are fixed there. */
struct hc_call {
    uint64_t fn;                  /* 0 */
    uint64_t x[8];                /* 8: integer argument registers */
    uint64_t v[8];                /* 72: low 64 bits of the vector argument registers */
    uint64_t nstack;              /* 136 */
    uint64_t stack[HC_MAX_STACK]; /* 144 */
    uint64_t ret_x;               /* 272 */
    uint64_t ret_v;               /* 280 */
    uint64_t sp_expected;         /* 288 */
    uint64_t sp_after;            /* 296 */
    uint64_t callee_after[19];    /* 304 */
};
_Static_assert(offsetof(struct hc_call, nstack) == 136, "layout");
_Static_assert(offsetof(struct hc_call, ret_x) == 272, "layout");
_Static_assert(offsetof(struct hc_call, callee_after) == 304, "layout");

void hc_call_regs(struct hc_call *c);
uint64_t hc_save[24];
uint64_t hc_canary[19];

volatile uint64_t hc_target_calls, hc_last_k, hc_last_h;

uint64_t hc_hash_and_record(uint64_t k, const uint64_t *mixes, int n) {
    uint64_t h = hc_avalanche(k ^ 0x0123456789ABCDEFull);
    for (int i = 0; i < n; i++) {
        uint64_t pos = (uint64_t)(i + 1) * 0xD6E8FEB86659FD93ull;
        h = hc_avalanche(((h << 17) | (h >> 47)) ^ hc_avalanche(mixes[i] ^ pos));
    }
    hc_target_calls++;
    hc_last_k = k;
    hc_last_h = h;
    return h;
}

/* Called before every OP_CALL: its address starts a new segment in a qemu
 * execution trace. */
__attribute__((noinline)) void hc_mark(void) { __asm__ volatile("" ::: "memory"); }

static sigjmp_buf hc_jmp;
static volatile sig_atomic_t hc_in_call;
static volatile uint64_t hc_fault_sig, hc_fault_pc, hc_fault_addr;

static void on_fault(int sig, siginfo_t *info, void *uc_) {
    ucontext_t *uc = uc_;
    if (!hc_in_call) {
        /* A fault in the harness itself: nothing sensible to go back to. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    hc_fault_sig = (uint64_t)sig;
    hc_fault_addr = (uint64_t)(uintptr_t)info->si_addr;
#if defined(__aarch64__)
    hc_fault_pc = uc->uc_mcontext.pc;
#else
    hc_fault_pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#endif
    siglongjmp(hc_jmp, 1);
}

static FILE *out;

static void emit(uint64_t tag, const uint64_t *words, uint64_t n) {
    fwrite(&tag, 8, 1, out);
    fwrite(&n, 8, 1, out);
    if (n)
        fwrite(words, 8, n, out);
}

static uint64_t *read_program(uint64_t *nwords) {
    uint64_t head[2];
    if (fread(head, 8, 2, stdin) != 2 || head[0] != MAGIC) {
        fprintf(stderr, "harness: bad program header\n");
        exit(2);
    }
    uint64_t *w = malloc(head[1] * 8 + 8);
    if (!w || fread(w, 8, head[1], stdin) != head[1]) {
        fprintf(stderr, "harness: truncated program (%llu words expected)\n",
                (unsigned long long)head[1]);
        exit(2);
    }
    *nwords = head[1];
    return w;
}

extern char __executable_start[], etext[];

int main(void) {
    out = stdout;
    static char buf[1 << 16];
    setvbuf(out, buf, _IOFBF, sizeof buf);

    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    int sigs[] = {SIGSEGV, SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGALRM};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);

    for (int i = 0; i < HC_CALLEE_SAVED; i++)
        hc_canary[i] = 0xC0DE0000C0DE0000ull ^ ((uint64_t)(i + 1) * 0x0101010101010101ull);

    uint64_t n;
    uint64_t *w = read_program(&n);
    struct hc_call *layouts = NULL;
    uint64_t nlayouts = 0, cap = 0;
    uint64_t i = 0;
    while (i < n) {
        uint64_t tag = w[i++];
        switch (tag) {
        case OP_INFO: {
            uint64_t info[4] = {(uint64_t)(uintptr_t)hc_mark, (uint64_t)(uintptr_t)__executable_start,
                                (uint64_t)(uintptr_t)etext, hc_target_count};
            uint64_t m = 4 + 3 * hc_target_count;
            uint64_t *r = malloc(m * 8);
            for (int j = 0; j < 4; j++)
                r[j] = info[j];
            for (uint64_t j = 0; j < hc_target_count; j++) {
                r[4 + 3 * j] = hc_targets[j].sig;
                r[5 + 3 * j] = hc_targets[j].k;
                r[6 + 3 * j] = (uint64_t)(uintptr_t)hc_targets[j].fn;
            }
            emit(tag, r, m);
            free(r);
            break;
        }
        case OP_MAP: {
            uint64_t addr = w[i], len = w[i + 1];
            i += 2;
            void *p = mmap((void *)(uintptr_t)addr, len, PROT_READ | PROT_WRITE | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            uint64_t status = 0;
            if (p == MAP_FAILED) {
                status = (uint64_t)errno;
            } else if ((uint64_t)(uintptr_t)p != addr) {
                /* A kernel that ignores FIXED_NOREPLACE treats it as a hint. */
                munmap(p, len);
                status = EEXIST;
            }
            emit(tag, &status, 1);
            break;
        }
        case OP_WRITE: {
            uint64_t addr = w[i], len = w[i + 1];
            i += 2;
            uint64_t status = 0;
            /* Writing to unmapped or read-only memory is reported, not
             * fatal: status = the signal number. */
            hc_fault_sig = 0;
            if (sigsetjmp(hc_jmp, 1) == 0) {
                hc_in_call = 1;
                memcpy((void *)(uintptr_t)addr, &w[i], len);
                hc_in_call = 0;
            } else {
                hc_in_call = 0;
                status = hc_fault_sig;
            }
            i += (len + 7) / 8;
            emit(tag, &status, 1);
            break;
        }
        case OP_LAYOUT: {
            uint64_t nstack = w[i++];
            if (nstack > HC_MAX_STACK) {
                fprintf(stderr, "harness: %llu stack words (max %d)\n", (unsigned long long)nstack,
                        HC_MAX_STACK);
                exit(2);
            }
            if (nlayouts == cap) {
                cap = cap ? 2 * cap : 64;
                layouts = realloc(layouts, cap * sizeof *layouts);
            }
            struct hc_call *c = &layouts[nlayouts++];
            memset(c, 0, sizeof *c);
            memcpy(c->x, &w[i], 64);
            memcpy(c->v, &w[i + 8], 64);
            c->nstack = nstack;
            memcpy(c->stack, &w[i + 16], nstack * 8);
            i += 16 + nstack;
            uint64_t index = nlayouts - 1;
            emit(tag, &index, 1);
            break;
        }
        case OP_CALL: {
            uint64_t fn = w[i], layout = w[i + 1], set_x0 = w[i + 2], x0 = w[i + 3];
            i += 4;
            if (layout >= nlayouts) {
                fprintf(stderr, "harness: layout %llu not defined\n", (unsigned long long)layout);
                exit(2);
            }
            static struct hc_call c;
            c = layouts[layout];
            c.fn = fn;
            if (set_x0)
                c.x[0] = x0;
            hc_target_calls = 0;
            hc_last_k = hc_last_h = 0;
            hc_fault_sig = hc_fault_pc = hc_fault_addr = 0;
            hc_mark();
            if (sigsetjmp(hc_jmp, 1) == 0) {
                hc_in_call = 1;
                alarm(HC_CALL_SECONDS);
                hc_call_regs(&c);
                alarm(0);
                hc_in_call = 0;
            } else {
                alarm(0);
                hc_in_call = 0;
            }
            uint64_t clobbered = 0;
            int faulted = hc_fault_sig != 0;
            for (int j = 0; j < HC_CALLEE_SAVED && !faulted; j++)
                if (c.callee_after[j] != hc_canary[j])
                    clobbered |= 1ull << j;
            uint64_t r[10] = {hc_fault_sig, c.ret_x, c.ret_v, hc_target_calls, hc_last_k, hc_last_h,
                              clobbered, faulted ? 1 : c.sp_after == c.sp_expected,
                              hc_fault_pc, hc_fault_addr};
            emit(tag, r, 10);
            break;
        }
        default:
            fprintf(stderr, "harness: unknown operation %llu at word %llu\n", (unsigned long long)tag,
                    (unsigned long long)(i - 1));
            exit(2);
        }
    }
    fflush(out);
    return 0;
}
