// Fused tridiagonal line kernels of crprop's transport operator (CUDA C++, compiled by NVRTC via CuPy).
//
// Compile-time macros set by crprop/backends/cupy_backend.py:
//   REAL        float or double: storage and arithmetic type of the swept field (the Thomas recurrences)
//   NR, NZ, NE  grid sizes (n_r, n_z, n_E); the line length of each sweep is a compile-time constant
// Everything that decides convergence (the residual Q - A psi and its norms) is computed in double.
//
// Layout (crprop/operator.py): fields are [r, z, E, model] with the model index b fastest, so the
// threads of a warp (consecutive b) read consecutive addresses in every sweep direction.
// One thread solves one (line, model) system with the Thomas algorithm (numba_backend's algorithm).
// Coefficient tables (s^-1): r (NR,NE,B), z (NZ,NE,B), p (NE,B), shared loss/gamma maps (NR,NZ,NE),
// masks rmask (NR,) and zmask (NZ,B) as 1.0 (unknown) / 0.0 (Dirichlet node).
//
// Scaled unknowns: a field x~ = x / s(E, model) (s > 0) leaves the r and z lines unchanged (s is constant
// along them); a p line's off-diagonals pick up s_{k-1}/s_k and s_{k+1}/s_k (table srat, (2,NE,B)).

typedef REAL real;

// UNROLL_Z, UNROLL_R, UNROLL_P = 1: that direction's Thomas loops are fully unrolled, so its per-line
// arrays c', d' can live in registers (more registers per thread, fewer threads per SM); 0: rolled loops,
// c', d' in thread-local memory (cached in L1/L2, many threads per SM). Which is faster is measured by
// benchmarks/gpu_solver_speed.py.
#ifndef UNROLL_Z
#define UNROLL_Z 1
#endif
#ifndef UNROLL_R
#define UNROLL_R 1
#endif
#ifndef UNROLL_P
#define UNROLL_P 0
#endif

#define OP_PARAMS                                                                                          \
    const double *__restrict__ r1, const double *__restrict__ r2, const double *__restrict__ r3,          \
        const double *__restrict__ z1, const double *__restrict__ z2, const double *__restrict__ z3,      \
        const double *__restrict__ p1, const double *__restrict__ p2, const double *__restrict__ p3,      \
        const double *__restrict__ l2, const double *__restrict__ l3, const double *__restrict__ gam,     \
        const double *__restrict__ rmask, const double *__restrict__ zmask,                               \
        const double *__restrict__ rl2, const double *__restrict__ rl3, const double *__restrict__ rl4,   \
        const int nb
#define OP_INIT {r1, r2, r3, z1, z2, z3, p1, p2, p3, l2, l3, gam, rmask, zmask, rl2, rl3, rl4, nb}

// l2, l3: the loss rows of the line solves (GALPROP's first-order stencil); rl2, rl3, rl4: the loss rows of the
// residual (the same values for that stencil; crnet's second-order one adds rl4 * psi_k+2, see
// crprop.discretization.LOSS_SCHEMES: defect correction, the solves keep l2, l3).
struct Op {
    const double *r1, *r2, *r3, *z1, *z2, *z3, *p1, *p2, *p3, *l2, *l3, *gam, *rmask, *zmask, *rl2, *rl3, *rl4;
    int nb;
};

__device__ __forceinline__ long long cell(const Op &o, int i, int j, int k, int b) {
    return (((long long)i * NZ + j) * NE + k) * o.nb + b;
}

// Thread -> (line, model b). Block x covers models [chunk * blockDim.x, ...) of line (blockIdx.x % nlines),
// chunk = blockIdx.x / nlines: the line index runs fastest over blocks, so lines that share coefficient slabs
// and neighbour data (the i-1, i+1, k-1, k+1 lines of the residual) are resident at the same time (L2 reuse),
// while a warp still reads 32 consecutive models (coalesced).
__device__ __forceinline__ bool line_and_model(int nlines, int nb, int &line, int &b) {
    line = (int)(blockIdx.x % (unsigned)nlines);
    b = (int)(blockIdx.x / (unsigned)nlines) * blockDim.x + threadIdx.x;
    return b < nb;
}

// (A psi) at one node, summed in numba_backend._residual's order (double precision).
__device__ __forceinline__ double apply_a(const Op &o, const double *__restrict__ psi, int i, int j, int k, int b) {
    const long long c = cell(o, i, j, k, b);
    const long long rt = ((long long)i * NE + k) * o.nb + b, zt = ((long long)j * NE + k) * o.nb + b;
    const long long pt = (long long)k * o.nb + b, st = ((long long)i * NZ + j) * NE + k;
    const long long sr = (long long)NZ * NE * o.nb, sz = (long long)NE * o.nb;
    double a = (o.r2[rt] + o.z2[zt] + o.p2[pt] + o.rl2[st] + o.gam[st]) * psi[c];
    if (i > 0) a -= o.r1[rt] * psi[c - sr];
    if (i < NR - 1) a -= o.r3[rt] * psi[c + sr];
    if (j > 0) a -= o.z1[zt] * psi[c - sz];
    if (j < NZ - 1) a -= o.z3[zt] * psi[c + sz];
    if (k > 0) a -= o.p1[pt] * psi[c - o.nb];
    if (k < NE - 1) a -= (o.p3[pt] + o.rl3[st]) * psi[c + o.nb];
    if (k < NE - 2) a += o.rl4[st] * psi[c + 2 * o.nb];
    return a;
}

// (Q - A psi) at one node, 0 on Dirichlet nodes (double): the residual of the Douglas step and of `residual`.
__device__ __forceinline__ double masked_residual(const Op &o, const double *__restrict__ psi,
                                                  const double *__restrict__ q, int i, int j, int k, int b) {
    return (q[cell(o, i, j, k, b)] - apply_a(o, psi, i, j, k, b)) * o.rmask[i] * o.zmask[j * o.nb + b];
}

// ------------------------------------------------------------------------------------------ lines
// Each line type gives: N (length), at(t) (field index), mask(t) (1 = unknown), post(t) (GALPROP's
// boundary reset after the sweep), theta(t) (pseudo-time step, s) and coef(t) (a1, a2, a3 in s^-1).

struct LineZ {  // fixed (i, k, b), t = j
    static const int N = NZ, U = UNROLL_Z ? NZ : 1;
    const Op &o;
    int i, k, b;
    double th;
    __device__ long long at(int t) const { return cell(o, i, t, k, b); }
    __device__ double mask(int t) const { return o.rmask[i] * o.zmask[t * o.nb + b]; }
    __device__ double post(int t) const { return o.zmask[t * o.nb + b]; }
    __device__ double theta(int) const { return th; }
    __device__ void coef(int t, double &a1, double &a2, double &a3) const {
        const long long q = ((long long)t * NE + k) * o.nb + b;
        a1 = t > 0 ? o.z1[q] : 0.0;
        a2 = o.z2[q];
        a3 = t < N - 1 ? o.z3[q] : 0.0;
    }
};

struct LineR {  // fixed (j, k, b), t = i
    static const int N = NR, U = UNROLL_R ? NR : 1;
    const Op &o;
    int j, k, b;
    double th;
    __device__ long long at(int t) const { return cell(o, t, j, k, b); }
    __device__ double mask(int t) const { return o.rmask[t] * o.zmask[j * o.nb + b]; }
    __device__ double post(int t) const { return o.rmask[t] * o.zmask[j * o.nb + b]; }
    __device__ double theta(int) const { return th; }
    __device__ void coef(int t, double &a1, double &a2, double &a3) const {
        const long long q = ((long long)t * NE + k) * o.nb + b;
        a1 = t > 0 ? o.r1[q] : 0.0;
        a2 = o.r2[q];
        a3 = t < N - 1 ? o.r3[q] : 0.0;
    }
};

struct LineP {  // fixed (i, j, b), t = k; off-diagonals rescaled by srat for scaled unknowns
    static const int N = NE, U = UNROLL_P ? NE : 1;
    const Op &o;
    int i, j, b;
    const double *th_arr;
    double th_c;
    int th_const;
    const double *srat;
    __device__ long long at(int t) const { return cell(o, i, j, t, b); }
    __device__ double mask(int) const { return o.rmask[i] * o.zmask[j * o.nb + b]; }
    __device__ double post(int) const { return 1.0; }
    __device__ double theta(int t) const { return th_const ? th_c : th_arr[t * o.nb + b]; }
    __device__ void coef(int t, double &a1, double &a2, double &a3) const {
        const long long q = (long long)t * o.nb + b, s = ((long long)i * NZ + j) * NE + t;
        const long long half = (long long)NE * o.nb;
        a1 = t > 0 ? o.p1[q] * srat[q] : 0.0;
        a2 = o.p2[q] + o.l2[s] + o.gam[s];
        a3 = t < N - 1 ? (o.p3[q] + o.l3[s]) * srat[half + q] : 0.0;
    }
};

// Thomas algorithm for (I + theta A_line) x = rhs on one line. rhs(t, m, a1, a2, a3) gives the right-hand
// side of row t (a* = theta * m * coefficient in double, before the recurrence rounds them to REAL); out(t, x)
// stores the solution. Rows with m = 0 are the identity (Dirichlet nodes) unless raw (GALPROP's time stepping
// solves them and resets them later).
template <class L, class Rhs, class Out>
__device__ __forceinline__ void thomas(const L &line, int raw, Rhs rhs, Out out) {
    real cp[L::N], dp[L::N];
#pragma unroll(L::U)
    for (int t = 0; t < L::N; ++t) {
        const double m = raw ? 1.0 : line.mask(t);
        const double th = line.theta(t) * m;
        double c1, c2, c3;
        line.coef(t, c1, c2, c3);
        const double d1 = c1 * th, d2 = c2 * th, d3 = c3 * th;
        const real a1 = (real)d1, a2 = (real)d2, a3 = (real)d3;
        const real x = rhs(t, m, d1, d2, d3);
        real den;
        if (t > 0) {
            den = (real)1 + a2 + a1 * cp[t - 1];
            dp[t] = (x + a1 * dp[t - 1]) / den;
        } else {
            den = (real)1 + a2;
            dp[t] = x / den;
        }
        cp[t] = -a3 / den;
    }
    real v = dp[L::N - 1];
    out(L::N - 1, v);
#pragma unroll(L::U)
    for (int t = L::N - 2; t >= 0; --t) {
        v = dp[t] - cp[t] * v;
        out(t, v);
    }
}

// Generic sweep: solve (I + theta A_d) x = rhs along one direction for every (line, model).
//   cn = 0: rhs = src * m (identity rows on Dirichlet nodes unless raw);
//   cn = 1: GALPROP's Crank-Nicolson step x = (I + theta A_d)^-1 [(I - theta A_d) src + qfac * qs], negatives
//           clipped, and if post = 1 the result is multiplied by the direction's boundary mask (GALPROP's
//           reset). It is solved in delta form: the right-hand side qfac qs - 2 theta A_d src is formed in
//           double, the recurrence solves for the increment in REAL, and x = src + increment is added in
//           double before it is rounded to REAL for storage. Algebraically the same step; in float32 the
//           rounding error is relative to the increment, not to psi, which keeps a 240-step ladder within
//           ~2e-6 of float64 (the direct form drifted to 2e-5).
// theta: (NE,B) table, or the constant theta_s (s) when theta_const. Skipped when state[0] != 0.
// cn is a compile-time parameter: the plain sweeps (sweep_*, fast mode) and the Crank-Nicolson sweeps (cn_*,
// galprop mode) are separate kernels, so the fast-mode kernels carry none of the delta form's double registers.
// src, qs and out are not __restrict__: the drivers pass one buffer as all three (in-place sweeps). Each thread
// reads a cell of its own line before writing it, which is correct only without the no-alias promise.
template <int CN, class L>
__device__ __forceinline__ void sweep_line(const L &line, const real *src, const real *qs,
                                           double qfac, int raw, int post, real *out) {
    auto rhs = [&](int t, double m, double a1, double a2, double a3) -> real {
        const long long c = line.at(t);
        if (!CN) return (real)(src[c] * m);
        double x = qfac * (double)qs[c] - 2.0 * a2 * (double)src[c];
        if (t > 0) x += 2.0 * a1 * (double)src[line.at(t - 1)];
        if (t < L::N - 1) x += 2.0 * a3 * (double)src[line.at(t + 1)];
        return (real)x;
    };
    auto store = [&](int t, real v) {
        const long long c = line.at(t);
        if (CN) {
            double x = (double)src[c] + (double)v;  // src[c] is still psi: each cell is written once, after
            x = x > 0.0 ? x : 0.0;                  // its own and its neighbours' last reads (forward pass)
            if (post) x *= line.post(t);
            v = (real)x;
        }
        out[c] = v;
    };
    thomas(line, raw, rhs, store);
}

#define SWEEP_PARAMS                                                                                       \
    OP_PARAMS, const double *__restrict__ theta, const double theta_s, const int theta_const,             \
        const double *__restrict__ srat, const real *src, const real *qs, const double qfac,             \
        const int raw, const int post, const int *__restrict__ state, real *out

#if UNROLL_P
#define P_BOUNDS
#else
#define P_BOUNDS __launch_bounds__(128, 16)
#endif
#define LINE_KERNELS(NAME, CN)                                                                             \
    extern "C" __global__ void NAME##_z(SWEEP_PARAMS) {                                                    \
        int line, b;                                                                                       \
        if (state[0] || !line_and_model(NR * NE, nb, line, b)) return;                                     \
        const Op o = OP_INIT;                                                                              \
        const int i = line % NR, k = line / NR;                                                            \
        const LineZ L{o, i, k, b, theta_const ? theta_s : theta[(long long)k * nb + b]};                   \
        sweep_line<CN>(L, src, qs, qfac, raw, post, out);                                                  \
    }                                                                                                      \
    extern "C" __global__ void NAME##_r(SWEEP_PARAMS) {                                                    \
        int line, b;                                                                                       \
        if (state[0] || !line_and_model(NZ * NE, nb, line, b)) return;                                     \
        const Op o = OP_INIT;                                                                              \
        const int j = line % NZ, k = line / NZ;                                                            \
        const LineR L{o, j, k, b, theta_const ? theta_s : theta[(long long)k * nb + b]};                   \
        sweep_line<CN>(L, src, qs, qfac, raw, post, out);                                                  \
    }                                                                                                      \
    extern "C" __global__ void P_BOUNDS NAME##_p(SWEEP_PARAMS) {                                           \
        int line, b;                                                                                       \
        if (state[0] || !line_and_model(NR * NZ, nb, line, b)) return;                                     \
        const Op o = OP_INIT;                                                                              \
        const int j = line % NZ, i = line / NZ;                                                            \
        const LineP L{o, i, j, b, theta, theta_s, theta_const, srat};                                      \
        sweep_line<CN>(L, src, qs, qfac, raw, post, out);                                                  \
    }

// sweep_z, sweep_r, sweep_p: plain solves (cn = 0); cn_z, cn_r, cn_p: GALPROP's Crank-Nicolson steps (cn = 1).
// With rolled loops (UNROLL_P = 0: c' and d' in local memory, memory-bound) the p kernels are held to 32 registers so that a
// full 64 warps fit on an SM (block size = cupy_backend.BLOCK = 128).
LINE_KERNELS(sweep, 0)
LINE_KERNELS(cn, 1)

// ------------------------------------------------------------------------------- Douglas (fast mode)
// One step: d = tau (Q - A psi) / s;  (I + tau A_z) d1 = d;  (I + tau A_p) d2 = d1;  (I + tau A_r) d3 = d2;
// psi += s d3. psi and Q are double (the residual is exact in double); d is REAL. The residual norms
// sum_{r,z} res^2 per (E, model) are accumulated into norm2 for the convergence check.

extern "C" __global__ void douglas_z(OP_PARAMS, const double *__restrict__ tau, const double *__restrict__ sc,
                                     const double *__restrict__ psi, const double *__restrict__ q,
                                     real *__restrict__ d, double *__restrict__ norm2,
                                     const int *__restrict__ state, const int *__restrict__ done) {
    int line, b;
    if (state[0] || !line_and_model(NR * NE, nb, line, b) || done[b]) return;
    const Op o = OP_INIT;
    const int i = line % NR, k = line / NR;
    const double tk = tau[(long long)k * nb + b], inv_s = 1.0 / sc[(long long)k * nb + b];
    const LineZ L{o, i, k, b, tk};
    double ss = 0.0;
    auto rhs = [&](int j, double m, double, double, double) -> real {
        const double r = masked_residual(o, psi, q, i, j, k, b);
        ss += r * r;
        return (real)(r * tk * inv_s);
    };
    auto store = [&](int j, real v) { d[L.at(j)] = v; };
    thomas(L, 0, rhs, store);
    atomicAdd(norm2 + (long long)k * nb + b, ss);
}

// The residual half of douglas_z alone (d = tau res / s and the norms), one thread per z line, no
// Thomas arrays: fewer registers, more threads in flight. Followed by sweep_z (cn = 0) on d, it gives
// exactly douglas_z's result (the split variant, chosen with cupy_backend.OPTIONS.fused_residual).
extern "C" __global__ void douglas_res(OP_PARAMS, const double *__restrict__ tau, const double *__restrict__ sc,
                                       const double *__restrict__ psi, const double *__restrict__ q,
                                       real *__restrict__ d, double *__restrict__ norm2,
                                       const int *__restrict__ state, const int *__restrict__ done) {
    int line, b;
    if (state[0] || !line_and_model(NR * NE, nb, line, b) || done[b]) return;
    const Op o = OP_INIT;
    const int i = line % NR, k = line / NR;
    const double tk = tau[(long long)k * nb + b], inv_s = 1.0 / sc[(long long)k * nb + b];
    double ss = 0.0;
#pragma unroll 4
    for (int j = 0; j < NZ; ++j) {
        const double r = masked_residual(o, psi, q, i, j, k, b);
        ss += r * r;
        d[cell(o, i, j, k, b)] = (real)(r * tk * inv_s);
    }
    atomicAdd(norm2 + (long long)k * nb + b, ss);
}

extern "C" __global__ void douglas_r(OP_PARAMS, const double *__restrict__ tau, const double *__restrict__ sc,
                                     const real *__restrict__ d, double *__restrict__ psi,
                                     const int *__restrict__ state, const int *__restrict__ done) {
    int line, b;
    if (state[0] || !line_and_model(NZ * NE, nb, line, b) || done[b]) return;
    const Op o = OP_INIT;
    const int j = line % NZ, k = line / NZ;
    const double s = sc[(long long)k * nb + b];
    const LineR L{o, j, k, b, tau[(long long)k * nb + b]};
    auto rhs = [&](int i, double m, double, double, double) -> real { return (real)(d[L.at(i)] * m); };
    auto store = [&](int i, real v) { psi[L.at(i)] += s * (double)v; };
    thomas(L, 0, rhs, store);
}

// Convergence check after douglas_z: relres[b] = max_k sqrt(norm2[k,b]) / qnorm[k,b] (qnorm = the residual
// scales of crprop.solvers.result.residual_scale, 0 only for a model without any source: skipped), norm2
// reset to 0. state[4] counts the steps on the device (so that a captured graph
// of several steps can be replayed). Per-model stop: a model whose relres <= tol gets done[b] = 1 and
// model_step[b] = this step; from then on douglas_z / douglas_res / douglas_r skip it (its psi stays the one
// whose residual met tol) and this kernel keeps its relres. The last block to finish sets state[2] = step
// and state[0] = 1 when every model is done, else advances the step counter; later kernels then return at
// once, so the host only has to look at state[0] now and then. state[1]: models not done (reset each step),
// state[5]: models not done after the last check (for the host's re-packing), state[3]: finished blocks.
extern "C" __global__ void douglas_check(double *__restrict__ norm2, const double *__restrict__ qnorm,
                                         const double tol, double *__restrict__ relres, int *state, const int nb,
                                         int *__restrict__ done, int *__restrict__ model_step) {
    if (((volatile int *)state)[0]) return;
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    int bad = 0;
    if (b < nb && !done[b]) {
        double worst = 0.0;
        for (int k = 0; k < NE; ++k) {
            const long long c = (long long)k * nb + b;
            const double qn = qnorm[c];
            const double ratio = qn > 0.0 ? sqrt(norm2[c]) / qn : 0.0;
            worst = (ratio > worst || ratio != ratio) ? ratio : worst;
            norm2[c] = 0.0;
        }
        relres[b] = worst;
        bad = !(worst <= tol);
        if (!bad) {
            done[b] = 1;
            model_step[b] = ((volatile int *)state)[4];
        }
    }
    const int n_bad = __syncthreads_count(bad);
    if (threadIdx.x == 0) {
        if (n_bad) atomicAdd(state + 1, n_bad);
        __threadfence();
        const int ticket = atomicAdd(state + 3, 1);
        if (ticket == (int)gridDim.x - 1) {
            const int left = atomicAdd(state + 1, 0);
            state[5] = left;
            if (left == 0) {
                state[2] = state[4];
                __threadfence();
                state[0] = 1;
            } else {
                state[4] += 1;
            }
            state[1] = 0;
            state[3] = 0;
        }
    }
}

// out = (Q - A psi) * mask, one thread per node (double).
extern "C" __global__ void residual(OP_PARAMS, const double *__restrict__ psi, const double *__restrict__ q,
                                    double *__restrict__ out) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)NR * NZ * NE * nb) return;
    const Op o = OP_INIT;
    const int b = (int)(t % nb);
    long long rest = t / nb;
    const int k = (int)(rest % NE);
    rest /= NE;
    const int j = (int)(rest % NZ), i = (int)(rest / NZ);
    out[t] = masked_residual(o, psi, q, i, j, k, b);
}
