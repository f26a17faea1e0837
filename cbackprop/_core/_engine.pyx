# Design: whole passes over a network in one nogil call.
#
# A network is described once, by a Layout (a Spec struct and the arrays it
# points into): the layer widths sizes = [d, m₁, …, m_L], one activation code
# and dropout rate per layer, the loss code and its parameters. All parameters live in one flat θ = [W¹, b¹, W², b², …]
# (Wˡ row-major, shape mₗ₋₁ × mₗ), the gradient in `grad` with the same layout.
#
# The workspace is one flat buffer of the network's dtype, allocated by Python
# once per fit (or predict): for each layer l, Zˡ, Aˡ, dZˡ and Mˡ (B × mₗ
# each; Mˡ holds the dropout mask, 0 or 1/(1−p)), then the batch buffers
# X (B × d; none for sparse input), Y (B × k) and w (B). Nothing in here
# allocates; every loop runs without the GIL. Errors (a non-finite loss) are
# returned as a status code for Python to raise.
#
# Input X is dense (a C-contiguous n × d array) or sparse (a `_sparse.CSR`).
# Sparse input changes only the first layer's two products, Z¹ = X·W¹ and
# ∂W¹ = Xᵀ·δ¹ (`_sparse`'s kernels, over the batch's rows where they are:
# nothing is gathered); the Spec then points at the batch's CSR rows.

from cython cimport floating
from libc.math cimport isfinite, sqrt
from libc.string cimport memcpy, memset
from libc.stdint cimport uint64_t
from cpython.mem cimport PyMem_Malloc, PyMem_Free

import numpy as np

from cbackprop._core._blas cimport gemm
from cbackprop._core._sparse cimport CSR, CSRRows, csr_gemm, csr_t_gemm
from cbackprop._core._activations cimport (
    activate, derivative, bias_activation_forward, activation_backward, SIGMOID, TANH)
from cbackprop._core._losses cimport loss_backward, CROSS_ENTROPY, BINARY_CROSS_ENTROPY
from cbackprop._core._optim cimport (
    gemm_writes_step, keep_copy, layer_step, nonfinite, update_slice, SGD, SGD_VELOCITY, HP_LR,
    HP_MOMENTUM, HP_NESTEROV, HP_WEIGHT_DECAY, HP_EPS)

# Status codes returned by train_batches.
cpdef enum:
    STATUS_OK = 0
    STATUS_NONFINITE_LOSS = 1
    STATUS_NONFINITE_PARAMS = 2


cdef struct Spec:
    const Py_ssize_t* sizes     # n_layers + 1 widths
    const int* acts             # n_layers activation codes
    Py_ssize_t n_layers
    int loss
    double delta                # huber's δ
    double alpha                # L2 strength: loss += α/2 Σ‖W‖²
    double alpha_per_weight     # > 0: a training batch of total weight S uses α = this/S
    const double* dropout       # per-layer drop rates while training, else NULL
    uint64_t* rng               # splitmix64 state for the dropout masks
    double* health              # training-health sums (health_size), else NULL
    CSRRows* sparse             # the input's rows when it is sparse, else NULL


cdef class Layout:
    """A network's shape for the kernels, built once: widths sizes = [d, m₁, …,
    m_L], one activation code and training dropout rate per layer, the loss code,
    huber's δ and the L2 strength α (trusted: the Python layer checked them).

    `alpha_per_weight` (0, off, by default; set before training) scales the L2
    term of each training batch by that batch's own total weight S: α =
    alpha_per_weight / S there (scikit-learn's alpha/(2S)·‖W‖² per batch, so a
    short last batch gets a larger penalty); loss_and_grad keeps α."""

    cdef Spec spec
    cdef readonly tuple sizes
    cdef Py_ssize_t[::1] _sizes
    cdef int[::1] _acts
    cdef double[::1] _dropout
    cdef double[::1] _health

    def __init__(self, sizes, acts, dropout, int loss, double delta, double alpha):
        self._sizes = np.array(sizes, dtype=np.intp)
        self._acts = np.array(acts, dtype=np.intc)
        self._dropout = np.array(dropout, dtype=np.float64)
        self.sizes = tuple(int(m) for m in sizes)
        self.spec.sizes = &self._sizes[0]
        self.spec.acts = &self._acts[0]
        self.spec.n_layers = self._acts.shape[0]
        self.spec.loss = loss
        self.spec.delta = delta
        self.spec.alpha = alpha
        self.spec.alpha_per_weight = 0
        self.spec.dropout = NULL      # on only in training passes
        self.spec.rng = NULL
        self.spec.health = NULL
        self.spec.sparse = NULL

    def watch_health(self, double[::1] sums):
        """From now on train_batches adds its training-health figures to sums
        (health_size(layout) zeros, see `health_figures`), every HEALTH_EVERY-th
        step, and the workspace has room for them."""
        self._health = sums
        self.spec.health = &self._health[0]

    @property
    def alpha_per_weight(self):
        return self.spec.alpha_per_weight

    @alpha_per_weight.setter
    def alpha_per_weight(self, double value):
        self.spec.alpha_per_weight = value

    cdef Spec training_spec(self, uint64_t* rng) noexcept:
        cdef Spec s = self.spec
        s.dropout = &self._dropout[0]
        s.rng = rng
        return s


cdef inline Py_ssize_t layer_offset(const Spec* s, Py_ssize_t B, Py_ssize_t l) noexcept nogil:
    """Offset of Zˡ in the workspace (Aˡ, dZˡ, Mˡ follow at +B·mₗ each)."""
    cdef Py_ssize_t off = 0, j
    for j in range(l):
        off += 4 * B * s.sizes[j + 1]
    return off


cdef inline Py_ssize_t batch_width(const Spec* s) noexcept nogil:
    """Width of the workspace's batch buffer X: d, or 0 for sparse input (not gathered)."""
    return 0 if s.sparse != NULL else s.sizes[0]


cdef bint bind_input(Spec* s, CSRRows* rows, object X, size_t itemsize) except -1:
    """For a sparse X (a `CSR` of the network's dtype), point s at *rows, a copy
    of its rows, and return True; for dense X return False."""
    if not isinstance(X, CSR):
        return False
    if (<CSR> X).itemsize != <Py_ssize_t> itemsize:
        raise TypeError("the sparse X's values do not have the network's dtype")
    rows[0] = (<CSR> X).rows
    s.sparse = rows
    return True


cdef inline Py_ssize_t param_count(const Spec* s) noexcept nogil:
    """Elements of θ: Σ over layers of mₗ₋₁·mₗ + mₗ."""
    cdef Py_ssize_t l, p = 0
    for l in range(s.n_layers):
        p += s.sizes[l] * s.sizes[l + 1] + s.sizes[l + 1]
    return p


cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    """The next number of a splitmix64 stream (Steele, Lea, Flood 2014)."""
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void dropout_forward(floating* A, floating* M, Py_ssize_t size, double p,
                          uint64_t* rng) noexcept nogil:
    """Inverted dropout: keep each a with probability 1−p, scaled by 1/(1−p)."""
    cdef Py_ssize_t i
    cdef floating keep = <floating> (1 / (1 - p))
    for i in range(size):
        M[i] = keep if (splitmix64(rng) >> 11) * (1.0 / 9007199254740992.0) >= p else 0
        A[i] *= M[i]


cdef void dropout_activation_backward(int act, const floating* Z, const floating* M,
                                      floating* dZ, Py_ssize_t size) noexcept nogil:
    """dZ ⊙= M ⊙ σ'(Z), with σ(z) recomputed: A holds the dropped activations."""
    cdef Py_ssize_t i
    for i in range(size):
        dZ[i] *= M[i] * derivative(act, Z[i], activate(act, Z[i]))


def workspace_size(Layout layout, Py_ssize_t B, bint sparse=False):
    """Elements in the workspace for batches of up to B rows (sparse: of sparse
    input, which needs no batch buffer X) and, while health is watched, room
    for two copies of the widest layer's parameters."""
    cdef const Spec* s = &layout.spec
    cdef Py_ssize_t total = 0, widest = 0, j
    for j in range(1, s.n_layers + 1):
        total += 4 * s.sizes[j]
        widest = max(widest, s.sizes[j - 1] * s.sizes[j] + s.sizes[j])
    return B * (total + (0 if sparse else s.sizes[0]) + s.sizes[s.n_layers] + 1) + (
        2 * widest if s.health != NULL else 0)


# Training-health figures are taken on every HEALTH_EVERY-th step (and the first).
# Per layer the sums hold HEALTH_SCALARS numbers: Σ‖∂C/∂W‖, Σ‖ΔW‖/‖W‖, steps
# measured, rows seen; then per unit whether z was ever > 0, and Σ σ'(z)/max σ'
# (sigmoid and tanh layers).
cpdef enum:
    HEALTH_EVERY = 8
    HEALTH_SCALARS = 4


def health_size(Layout layout):
    """Elements of the training-health sums of a layout."""
    return sum(HEALTH_SCALARS + 2 * m for m in layout.sizes[1:])


cdef void watch_layer(const Spec* s, Py_ssize_t l, int kind, const double* hp, Py_ssize_t n,
                      const floating* Z, floating* W, const floating* g, const floating* v,
                      floating* old, bint before) noexcept nogil:
    """Training health of layer l around its update: called before it (before=True:
    keep W, and SGD's velocity v, in old) and after it (norms, units).

    ∂C/∂θ (the L2 term included) is g where the update formed it; plain SGD's
    fused step never forms ∂C/∂W, so it is read off the step instead:
    (W_old − W)/lr − λ_wd·W_old, or with momentum v − μ·v_old − λ_wd·W_old
    (SGD_VELOCITY: (μ·v_old − v)/lr − λ_wd·W_old)."""
    cdef Py_ssize_t i, j, h0 = 0, n_in = s.sizes[l], n_out = s.sizes[l + 1]
    cdef Py_ssize_t nw = n_in * n_out
    cdef int act = s.acts[l]
    cdef bint velocity = kind == SGD_VELOCITY
    cdef bint derived = (kind == SGD or velocity) and hp[HP_NESTEROV] == 0
    cdef double lr = hp[HP_LR], mu = hp[HP_MOMENTUM], wd = hp[HP_WEIGHT_DECAY]
    cdef double gsq = 0, dsq = 0, wsq = 0, d, gi, top
    cdef double* h
    cdef floating zij
    for i in range(l):
        h0 += HEALTH_SCALARS + 2 * s.sizes[i + 1]
    h = s.health + h0
    if before:
        memcpy(old, W, (nw + n_out) * sizeof(floating))
        if derived and mu != 0:
            memcpy(old + nw + n_out, v, nw * sizeof(floating))
        return
    for i in range(nw + n_out):
        if i >= nw or not derived:
            gi = g[i]                 # the bias gradient is always in g
        elif mu == 0:
            gi = (<double> old[i] - W[i]) / lr - wd * old[i]
        elif velocity:
            gi = (mu * old[nw + n_out + i] - <double> v[i]) / lr - wd * old[i]
        else:
            gi = <double> v[i] - mu * old[nw + n_out + i] - wd * old[i]
        gsq += gi * gi
        d = <double> W[i] - old[i]
        dsq += d * d
        wsq += <double> W[i] * W[i]
    h[0] += sqrt(gsq)
    h[1] += sqrt(dsq / wsq) if wsq > 0 else 0
    h[2] += 1
    h[3] += n
    top = 0.25 if act == SIGMOID else 1.0
    for i in range(n):
        for j in range(n_out):
            zij = Z[i * n_out + j]
            if zij > 0:
                h[HEALTH_SCALARS + j] = 1
            if act == SIGMOID or act == TANH:
                h[HEALTH_SCALARS + n_out + j] += derivative(act, zij, activate(act, zij)) / top


def workspace_views(floating[::1] ws, Layout layout, Py_ssize_t B, Py_ssize_t n):
    """[(Z, A, dZ), …] per layer: NumPy views of the first n rows (for trace)."""
    arr = np.asarray(ws)
    views = []
    cdef Py_ssize_t off = 0, m
    for m in layout.sizes[1:]:
        views.append(tuple(arr[off + i * B * m: off + i * B * m + n * m].reshape(n, m)
                           for i in range(3)))
        off += 4 * B * m
    return views


cdef void forward(const Spec* s, const floating* theta, const floating* X,
                  Py_ssize_t n, floating* ws, Py_ssize_t B) noexcept nogil:
    """For each layer: Z = A_prev·W + b, A = σ(Z), with A⁰ = X (n ≤ B rows; the
    CSR rows s.sparse instead, unless NULL)."""
    cdef Py_ssize_t l, n_in, n_out, p = 0
    cdef const floating* a_prev = X
    cdef floating* Z = ws
    for l in range(s.n_layers):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        if l == 0 and s.sparse != NULL:
            csr_gemm(s.sparse, n, n_out, theta + p, Z)
        else:
            gemm(False, False, <int> n, <int> n_out, <int> n_in, <floating> 1,
                 a_prev, <int> n_in, theta + p, <int> n_out, <floating> 0, Z, <int> n_out)
        bias_activation_forward(s.acts[l], Z, Z + B * n_out, theta + p + n_in * n_out,
                                n, n_out)
        if s.dropout != NULL and s.dropout[l] > 0:
            dropout_forward(Z + B * n_out, Z + 3 * B * n_out, n * n_out, s.dropout[l], s.rng)
        a_prev = Z + B * n_out
        Z += 4 * B * n_out
        p += n_in * n_out + n_out


cdef void column_sums(const floating* dZ, Py_ssize_t n, Py_ssize_t m, floating* db,
                      bint accumulate) noexcept nogil:
    """db (+)= Σ_rows dZ, for an n × m dZ."""
    cdef Py_ssize_t i, j
    if not accumulate:
        memset(db, 0, m * sizeof(floating))
    for i in range(n):
        for j in range(m):
            db[j] += dZ[i * m + j]


cdef void delta_prev(const Spec* s, Py_ssize_t l, const floating* W, const floating* dZ,
                     Py_ssize_t n, floating* ws, Py_ssize_t B) noexcept nogil:
    """dZˡ⁻¹ = σ'(Zˡ⁻¹) ⊙ (dZˡ·Wˡᵀ) (and ⊙ the dropout mask Mˡ⁻¹), into the workspace."""
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1]
    cdef floating* Z_prev = ws + layer_offset(s, B, l - 1)
    cdef floating* dZ_prev = Z_prev + 2 * B * n_in
    gemm(False, True, <int> n, <int> n_in, <int> n_out, <floating> 1,
         dZ, <int> n_out, W, <int> n_out, <floating> 0, dZ_prev, <int> n_in)
    if s.dropout != NULL and s.dropout[l - 1] > 0:
        dropout_activation_backward(s.acts[l - 1], Z_prev, Z_prev + 3 * B * n_in, dZ_prev,
                                    n * n_in)
    else:
        activation_backward(s.acts[l - 1], Z_prev, Z_prev + B * n_in, dZ_prev, n * n_in)


cdef void backward(const Spec* s, const floating* theta, floating* grad, const floating* X,
                   Py_ssize_t n, floating* ws, Py_ssize_t B, floating beta) noexcept nogil:
    """From dZᴸ (already set) back: dW = A_prevᵀ·dZ, db = Σ_rows dZ,
    dZ_prev = σ'(Z_prev) ⊙ (dZ·Wᵀ). grad = beta·grad + these. The first layer
    computes no δ for the input; its A_prev is X (or the CSR rows s.sparse)."""
    cdef Py_ssize_t l, n_in, n_out, p = param_count(s)
    cdef const floating* a_prev
    cdef floating* dZ
    for l in range(s.n_layers - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        p -= n_in * n_out + n_out
        dZ = ws + layer_offset(s, B, l) + 2 * B * n_out
        a_prev = X if l == 0 else ws + layer_offset(s, B, l - 1) + B * n_in
        if l == 0 and s.sparse != NULL:
            csr_t_gemm(s.sparse, n, n_in, n_out, <floating> 1, dZ, beta, grad + p)
        else:
            gemm(True, False, <int> n_in, <int> n_out, <int> n, <floating> 1,
                 a_prev, <int> n_in, dZ, <int> n_out, beta, grad + p, <int> n_out)
        column_sums(dZ, n, n_out, grad + p + n_in * n_out, beta != 0)
        if l > 0:
            delta_prev(s, l, theta + p, dZ, n, ws, B)


cdef double add_l2(const Spec* s, const floating* theta, floating* grad) noexcept nogil:
    """grad_W += α·W for every weight, not bias (unless grad is NULL);
    return α/2 · Σ‖W‖²."""
    cdef Py_ssize_t l, i, p = 0, nw
    cdef double sq = 0
    cdef floating a = <floating> s.alpha
    for l in range(s.n_layers):
        nw = s.sizes[l] * s.sizes[l + 1]
        for i in range(p, p + nw):
            sq += <double> theta[i] * theta[i]
            if grad != NULL:
                grad[i] += a * theta[i]
        p += nw + s.sizes[l + 1]
    return 0.5 * s.alpha * sq


cdef Py_ssize_t count_correct(int loss, const floating* A, const floating* Y,
                              Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Rows classified right: argmax a = argmax y (cross_entropy), or every
    output on the same side of ½ as its target (binary_cross_entropy)."""
    cdef Py_ssize_t i, j, best_a, best_y, correct = 0
    cdef floating top_a, top_y
    cdef bint ok
    for i in range(n):
        if loss == CROSS_ENTROPY:
            # the first maximum of each row, by selects (no branch to mispredict)
            best_a = best_y = 0
            top_a = A[i * k]
            top_y = Y[i * k]
            for j in range(1, k):
                best_a = j if A[i * k + j] > top_a else best_a
                top_a = A[i * k + j] if A[i * k + j] > top_a else top_a
                best_y = j if Y[i * k + j] > top_y else best_y
                top_y = Y[i * k + j] if Y[i * k + j] > top_y else top_y
            correct += best_a == best_y
        elif loss == BINARY_CROSS_ENTROPY:
            ok = True
            for j in range(k):
                if (A[i * k + j] >= 0.5) != (Y[i * k + j] >= 0.5):
                    ok = False
            correct += ok
    return correct


cdef double forward_loss(const Spec* s, const floating* theta, const floating* X,
                         const floating* Y, const floating* w, Py_ssize_t n,
                         double weight_total, floating* ws, Py_ssize_t B,
                         Py_ssize_t* correct) noexcept nogil:
    """Forward and loss over n rows, leaving δᴸ in dZᴸ. The loss and δ are
    normalised by weight_total (Σw over the batch or the data set); returns the
    loss of these rows without the L2 term and adds the rows classified right
    to *correct."""
    cdef Py_ssize_t L = s.n_layers, k = s.sizes[L]
    cdef floating* Z = ws + layer_offset(s, B, L - 1)
    cdef double norm = weight_total if s.loss == CROSS_ENTROPY else weight_total * k
    cdef double total
    forward(s, theta, X, n, ws, B)
    total = loss_backward(s.loss, s.acts[L - 1], Z, Z + B * k, Y, w, Z + 2 * B * k,
                          n, k, s.delta, 1.0 / norm)
    correct[0] += count_correct(s.loss, Z + B * k, Y, n, k)
    return total / norm


cdef bint backward_update(const Spec* s, floating* theta, floating* grad, floating* state,
                          Py_ssize_t n_params, int kind, const double* hp, long long t,
                          const floating* X, Py_ssize_t n, floating* ws, Py_ssize_t B,
                          floating* dX, Py_ssize_t ldx, floating* keep, floating* keep_state,
                          Py_ssize_t n_state) noexcept nogil:
    """The backward pass from dZᴸ with the optimizer step fused in: each layer
    is updated (`_optim.layer_step`) as soon as its gradient is known, once
    dZ_prev = σ'(Z_prev) ⊙ (dZ·Wᵀ) has used its old W, so the result equals a
    full backward pass then one update, while the layer's gradient is still
    in cache. With dX (row stride ldx; else NULL), dX = dZ¹·W¹ᵀ, the δ for the input
    before σ' (a bank's first layer, `Bank`), is formed too. Returns True if a
    parameter became NaN or ±inf (each update checks what it writes). Unless
    keep is NULL, θ and the state (n_state buffers) are saved into keep and
    keep_state as they were before this update (`train_batches`)."""
    cdef Py_ssize_t i, l, n_in, n_out, nw, p = param_count(s)
    cdef const floating* a_prev
    cdef floating* dZ
    cdef bint bad = False
    # Health is watched on some steps; the copies of W (and SGD's velocity)
    # before the update go to the end of the workspace.
    cdef bint watch = s.health != NULL and (t - 1) % HEALTH_EVERY == 0
    cdef floating* old = ws + layer_offset(s, B, s.n_layers) + B * (
        batch_width(s) + s.sizes[s.n_layers] + 1)
    for l in range(s.n_layers - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        nw = n_in * n_out
        p -= nw + n_out
        dZ = ws + layer_offset(s, B, l) + 2 * B * n_out
        a_prev = X if l == 0 else ws + layer_offset(s, B, l - 1) + B * n_in
        if l > 0:
            delta_prev(s, l, theta + p, dZ, n, ws, B)
        elif dX != NULL:
            gemm(False, True, <int> n, <int> n_in, <int> n_out, <floating> 1,
                 dZ, <int> n_out, theta + p, <int> n_out, <floating> 0, dX, <int> ldx)
        column_sums(dZ, n, n_out, grad + p + nw, False)
        if watch:
            watch_layer(s, l, kind, hp, n, ws + layer_offset(s, B, l), theta + p, grad + p,
                        state + p, old, True)
        if keep != NULL:
            # Saved just before the layer changes, while delta_prev has left
            # much of its W in cache.
            keep_copy(keep + p, theta + p, nw + n_out)
            for i in range(n_state):
                keep_copy(keep_state + i * n_params + p, state + i * n_params + p, nw + n_out)
        bad |= layer_step(kind, hp, t, s.alpha, a_prev, s.sparse if l == 0 else NULL, dZ,
                          n, n_in, n_out, theta + p, grad + p, state + p, state + n_params + p,
                          watch)
        if watch:
            watch_layer(s, l, kind, hp, n, ws + layer_offset(s, B, l), theta + p, grad + p,
                        state + p, old, False)
    return bad


cdef inline void batch_alpha(Spec* s, double wsum) noexcept nogil:
    """α of one training batch of total weight wsum (see Layout.alpha_per_weight)."""
    if s.alpha_per_weight > 0:
        s.alpha = s.alpha_per_weight / wsum


cdef double batch_forward(Spec* s, const floating* theta, const floating[:, ::1] X,
                          const floating[:, ::1] Y, const floating[::1] w,
                          const Py_ssize_t* rows, Py_ssize_t nb, floating* ws, Py_ssize_t B,
                          double* wsum, Py_ssize_t* correct) noexcept nogil:
    """Gather rows X[rows], Y[rows] (and their weights, 1 without w) into the
    batch buffers, then forward and loss, leaving δᴸ in dZᴸ. Returns the batch
    loss plus the L2 term (of this batch's α, batch_alpha); *wsum gets the
    batch's weight, *correct its rows classified right (added). Sparse input
    (s.sparse) is not gathered: s.sparse is pointed at these rows instead."""
    cdef Py_ssize_t i, r, d = batch_width(s), k = Y.shape[1]
    cdef floating* Xb = ws + layer_offset(s, B, s.n_layers)
    cdef floating* Yb = Xb + B * d
    cdef floating* wb = Yb + B * k
    cdef bint weighted = w.shape[0] > 0
    cdef double loss
    wsum[0] = 0
    if s.sparse != NULL:
        s.sparse.rows = rows
    for i in range(nb):
        r = rows[i]
        if s.sparse == NULL:
            memcpy(Xb + i * d, &X[r, 0], d * sizeof(floating))
        memcpy(Yb + i * k, &Y[r, 0], k * sizeof(floating))
        wb[i] = w[r] if weighted else 1
        wsum[0] += wb[i]
    batch_alpha(s, wsum[0])
    loss = forward_loss(s, theta, Xb, Yb, wb if weighted else NULL, nb, wsum[0], ws, B,
                        correct)
    if s.alpha != 0:
        loss += add_l2(s, theta, NULL)
    return loss


def train_batches(Layout layout, floating[::1] theta, floating[::1] grad,
                  floating[::1] state, int opt_kind, const double[::1] hp,
                  long long[::1] step_count, X, const floating[:, ::1] Y,
                  const floating[::1] w, const Py_ssize_t[::1] order, Py_ssize_t start,
                  Py_ssize_t stop, Py_ssize_t B, floating[::1] ws, uint64_t[::1] rng,
                  floating[::1] keep_theta, floating[::1] keep_state):
    """Train on the rows order[start:stop] of X (a C-contiguous array or a
    `CSR`, with a workspace sized for it) in batches of B, in place.

    Each batch: gather rows, forward, loss, then the backward pass with each
    layer's optimizer step fused in (see backward_update; `grad` is scratch).
    The optimizer is given by its code, hyper-parameter vector and step
    counter (advanced in place), its state in `state`; the dropout masks come
    from the stream in rng. Returns (Σ over batches of batch loss × batch
    rows, rows done, rows classified right, status). On a non-finite loss it
    stops before that batch's update (STATUS_NONFINITE_LOSS); when an update
    makes a parameter non-finite, after it (STATUS_NONFINITE_PARAMS).

    Unless keep_theta and keep_state are empty, the first update saves θ and
    the state into them as it finds them, a layer at a time (the caller's
    rollback point; see backward_update); when no row was trained (rows done
    0) nothing was updated and they were not written.
    """
    cdef Spec s = layout.training_spec(&rng[0])
    cdef const floating* Xb = &ws[0] + layer_offset(&s, B, s.n_layers)
    cdef Py_ssize_t nb, pos = start, correct = 0
    cdef double batch_loss, wsum, total = 0
    cdef int status = STATUS_OK
    cdef CSRRows rows
    cdef const floating[:, ::1] Xd = None
    cdef floating* keep = NULL
    cdef floating* keep_s = NULL
    cdef Py_ssize_t n_state = state.shape[0] // theta.shape[0]
    cdef bint bad
    if keep_theta.shape[0] != 0:
        if keep_theta.shape[0] != theta.shape[0] or keep_state.shape[0] != state.shape[0]:
            raise ValueError("keep_theta and keep_state must be empty or of θ's and the "
                             "state's sizes")
        keep, keep_s = &keep_theta[0], &keep_state[0]
    if not bind_input(&s, &rows, X, sizeof(floating)):
        Xd = X
    with nogil:
        while pos < stop:
            nb = min(B, stop - pos)
            batch_loss = batch_forward(&s, &theta[0], Xd, Y, w, &order[pos], nb, &ws[0], B,
                                       &wsum, &correct)
            if not isfinite(batch_loss):
                status = STATUS_NONFINITE_LOSS
                break
            step_count[0] += 1
            total += batch_loss * nb
            pos += nb
            bad = backward_update(&s, &theta[0], &grad[0], &state[0], theta.shape[0],
                                  opt_kind, &hp[0], step_count[0], Xb, nb, &ws[0], B, NULL, 0,
                                  keep, keep_s, n_state)
            keep = NULL         # kept once, by the first update
            if bad:
                status = STATUS_NONFINITE_PARAMS
                break
        if (status == STATUS_OK and gemm_writes_step(opt_kind, &hp[0])
                and nonfinite(&theta[0], theta.shape[0])):
            status = STATUS_NONFINITE_PARAMS
    return total, pos - start, correct, status


def batch_gradient(Layout layout, const floating[::1] theta, floating[::1] grad, X,
                   const floating[:, ::1] Y, const floating[::1] w,
                   const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t B,
                   floating[::1] ws, uint64_t[::1] rng):
    """∇L(θ) of the one batch order[start:start + B] (fewer at the end) into grad:
    the weighted mean over its rows plus the L2 term, with dropout as in
    training, and no update. Returns (batch loss, rows, rows classified right,
    Σ of the batch's weights, status)."""
    cdef Spec s = layout.training_spec(&rng[0])
    cdef const floating* Xb = &ws[0] + layer_offset(&s, B, s.n_layers)
    cdef Py_ssize_t nb = min(B, order.shape[0] - start), correct = 0
    cdef double batch_loss, wsum
    cdef int status = STATUS_OK
    cdef CSRRows rows
    cdef const floating[:, ::1] Xd = None
    if not bind_input(&s, &rows, X, sizeof(floating)):
        Xd = X
    with nogil:
        batch_loss = batch_forward(&s, &theta[0], Xd, Y, w, &order[start], nb, &ws[0], B,
                                   &wsum, &correct)
        if not isfinite(batch_loss):
            status = STATUS_NONFINITE_LOSS
        else:
            backward(&s, &theta[0], &grad[0], Xb, nb, &ws[0], B, 0)
            if s.alpha != 0:
                add_l2(&s, &theta[0], &grad[0])
    return batch_loss, nb, correct, wsum, status


def batch_loss(Layout layout, const floating[::1] theta, X, const floating[:, ::1] Y,
               const floating[::1] w, const Py_ssize_t[::1] order, Py_ssize_t start,
               Py_ssize_t B, floating[::1] ws, uint64_t[::1] rng):
    """The first half of batch_gradient: gather the batch order[start:start + B],
    forward and loss, leaving δᴸ in the workspace for `backward_layer`.
    Returns (batch loss, rows, rows classified right, Σ of the batch's
    weights, the batch's L2 α, status)."""
    cdef Spec s = layout.training_spec(&rng[0])
    cdef Py_ssize_t nb = min(B, order.shape[0] - start), correct = 0
    cdef double loss, wsum
    cdef CSRRows rows
    cdef const floating[:, ::1] Xd = None
    if not bind_input(&s, &rows, X, sizeof(floating)):
        Xd = X
    with nogil:
        loss = batch_forward(&s, &theta[0], Xd, Y, w, &order[start], nb, &ws[0], B, &wsum,
                             &correct)
    return (loss, nb, correct, wsum, s.alpha,
            STATUS_OK if isfinite(loss) else STATUS_NONFINITE_LOSS)


def backward_layer(Layout layout, const floating[::1] theta, floating[::1] grad, X,
                   const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t nb,
                   Py_ssize_t B, floating[::1] ws, double alpha, Py_ssize_t l):
    """Layer l's part of batch_gradient's backward pass, after `batch_loss` and
    layer l + 1's: δˡ = σ'(Zˡ) ⊙ (δˡ⁺¹·Wˡ⁺¹ᵀ) (below the output layer), then
    ∂C/∂Wˡ = A_prevᵀ·δˡ plus the L2 term α·Wˡ, and ∂C/∂bˡ = Σ_rows δˡ, into
    grad. Called from the output layer back, the layers write what
    batch_gradient writes, bit for bit: the same GEMMs, the same sums."""
    cdef Spec s = layout.training_spec(NULL)
    cdef Py_ssize_t n_in = s.sizes[l], n_out = s.sizes[l + 1], p = 0, j, i
    cdef CSRRows rows
    cdef bint sparse = bind_input(&s, &rows, X, sizeof(floating))
    cdef const floating* a_prev
    cdef floating* dZ
    cdef floating a = <floating> alpha
    for j in range(l):
        p += s.sizes[j] * s.sizes[j + 1] + s.sizes[j + 1]
    with nogil:
        if sparse:
            s.sparse.rows = &order[start]
        dZ = &ws[0] + layer_offset(&s, B, l) + 2 * B * n_out
        a_prev = (&ws[0] + layer_offset(&s, B, s.n_layers) if l == 0
                  else &ws[0] + layer_offset(&s, B, l - 1) + B * n_in)
        if l + 1 < s.n_layers:
            delta_prev(&s, l + 1, &theta[0] + p + n_in * n_out + n_out,
                       &ws[0] + layer_offset(&s, B, l + 1) + 2 * B * s.sizes[l + 2],
                       nb, &ws[0], B)
        if l == 0 and sparse:
            csr_t_gemm(s.sparse, nb, n_in, n_out, <floating> 1, dZ, <floating> 0, &grad[0] + p)
        else:
            gemm(True, False, <int> n_in, <int> n_out, <int> nb, <floating> 1, a_prev,
                 <int> n_in, dZ, <int> n_out, <floating> 0, &grad[0] + p, <int> n_out)
        column_sums(dZ, nb, n_out, &grad[0] + p + n_in * n_out, False)
        if alpha != 0:
            for i in range(p, p + n_in * n_out):
                grad[i] += a * theta[i]


def loss_and_grad(Layout layout, const floating[::1] theta, floating[::1] grad, X,
                  const floating[:, ::1] Y, const floating[::1] w, Py_ssize_t B,
                  floating[::1] ws, bint with_grad):
    """L(θ) over all rows of X (an array or a `CSR`) (weighted mean, plus
    α/2 Σ‖W‖²) and, with_grad, ∇L(θ) into grad (which may be empty
    otherwise), in chunks of B rows, with no dropout. Returns (L(θ), rows
    classified right)."""
    cdef Spec s = layout.spec
    cdef Py_ssize_t n = Y.shape[0], pos, nb, i, correct = 0
    cdef bint weighted = w.shape[0] > 0
    cdef double wtotal = 0, total = 0
    cdef CSRRows rows
    cdef bint sparse = bind_input(&s, &rows, X, sizeof(floating))
    cdef const floating[:, ::1] Xd = None if sparse else X
    cdef const floating* Xp = NULL
    with nogil:
        if weighted:
            for i in range(n):
                wtotal += w[i]
        else:
            wtotal = n
        if with_grad:
            memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
        pos = 0
        while pos < n:
            nb = min(B, n - pos)
            rows.first = pos
            if not sparse:
                Xp = &Xd[pos, 0]
            total += forward_loss(&s, &theta[0], Xp, &Y[pos, 0], &w[pos] if weighted else NULL,
                                  nb, wtotal, &ws[0], B, &correct)
            if with_grad:
                backward(&s, &theta[0], &grad[0], Xp, nb, &ws[0], B, 1)
            pos += nb
        if s.alpha != 0:
            total += add_l2(&s, &theta[0], &grad[0] if with_grad else NULL)
    return total, correct


def predict(Layout layout, const floating[::1] theta, X, floating[:, ::1] out,
            Py_ssize_t B, floating[::1] ws):
    """out = the network's output for every row of X (an array or a `CSR`), in
    chunks of B rows."""
    cdef Spec s = layout.spec
    cdef Py_ssize_t n = out.shape[0], k = out.shape[1], pos = 0, nb
    cdef floating* A = &ws[0] + layer_offset(&s, B, s.n_layers - 1) + B * k
    cdef CSRRows rows
    cdef bint sparse = bind_input(&s, &rows, X, sizeof(floating))
    cdef const floating[:, ::1] Xd = None if sparse else X
    cdef const floating* Xp = NULL
    with nogil:
        while pos < n:
            nb = min(B, n - pos)
            rows.first = pos
            if not sparse:
                Xp = &Xd[pos, 0]
            forward(&s, &theta[0], Xp, nb, &ws[0], B)
            memcpy(&out[pos, 0], A, nb * k * sizeof(floating))
            pos += nb


def shuffle(Py_ssize_t[::1] order, uint64_t[::1] rng):
    """Fisher–Yates shuffle of order in place, driven by a splitmix64 stream
    whose state lives in rng[0] (so a seed fixes every epoch's order)."""
    cdef Py_ssize_t i, j, tmp
    with nogil:
        for i in range(order.shape[0] - 1, 0, -1):
            j = <Py_ssize_t> (splitmix64(&rng[0]) % <uint64_t> (i + 1))
            tmp = order[i]
            order[i] = order[j]
            order[j] = tmp


def all_finite(const floating[::1] x):
    """True when no element of x is NaN or ±inf."""
    cdef bint bad = False
    if x.shape[0] > 0:
        with nogil:
            bad = nonfinite(&x[0], x.shape[0])
    return not bad


# ---- many networks on one pass over the data (cbackprop.many) --------------
#
# A bank trains K networks of one shape on the same batches. Their first layers
# sit side by side as one wide layer [W¹₁ … W¹_K] (d × K·m₁ row-major, then the
# K biases: the layout of one layer of K·m₁ units), so the first layer's forward
# product and its ∂W are one GEMM each for all K: X·[W₁ … W_K] and
# Xᵀ·[δ₁ … δ_K], and bias, σ and σ' are one pass over the wide block. Each
# network's layers 2…L run the ordinary engine passes (a Spec of those layers,
# `Member.sub`) on its own block of the wide activations, one network after
# another, sharing one workspace. The wide layer's parameters and optimizer
# state are copies, written back by Python (cbackprop/many.py).

cdef struct Member:
    Spec sub              # the network's layers 2…L; its input is its block of A¹
    double dropout1       # the first layer's training dropout rate
    void* theta           # θ (its first layer is stale while banked)
    void* state           # the optimizer's state buffers, θ's layout each
    const double* hp      # the optimizer's hyper-parameter vector (HP_* slots)
    long long* t          # its step counter
    Py_ssize_t n_params
    bint failed           # a non-finite batch loss: trained no further
    bint retired          # stopped (stop(), a callback): trained no further
    bint running          # takes part in the current batch
    double wsum           # the current batch's total weight for this network


cdef class Bank:
    """K networks of one shape for `bank_train` (trusted: cbackprop.many
    checked that they share widths, first activation, loss and dtype).

    layouts, thetas, states, hps, step_counters and rngs hold one entry per
    network: its Layout, θ, optimizer state, hyper-parameter vector (read at
    every step, so it may be changed in place between calls), step counter
    and random stream (for dropout). kind is the optimizer kind of all."""

    cdef Member* members
    cdef readonly Py_ssize_t size
    cdef Py_ssize_t d, m1
    cdef int act1, kind
    cdef list _keep

    def __cinit__(self, layouts, thetas, states, hps, step_counters, rngs, int kind):
        cdef Py_ssize_t k, K = len(layouts)
        cdef Layout layout
        cdef Member* m
        cdef double[::1] hp
        cdef long long[::1] t
        cdef uint64_t[::1] rng
        self.members = <Member*> PyMem_Malloc(max(K, 1) * sizeof(Member))
        if self.members == NULL:
            raise MemoryError()
        self.size = K
        self.kind = kind
        self._keep = [layouts, thetas, states, hps, step_counters, rngs]
        for k in range(K):
            layout = layouts[k]
            hp, t, rng = hps[k], step_counters[k], rngs[k]
            m = &self.members[k]
            m.sub = layout.training_spec(&rng[0])
            m.sub.sizes += 1
            m.sub.acts += 1
            m.sub.dropout += 1
            m.sub.n_layers -= 1
            m.dropout1 = layout._dropout[0]
            m.theta = <void*> <Py_ssize_t> thetas[k].ctypes.data
            m.state = <void*> <Py_ssize_t> states[k].ctypes.data
            m.hp = &hp[0]
            m.t = &t[0]
            m.n_params = thetas[k].shape[0]
            m.failed = False
            m.retired = False
        layout = layouts[0]
        self.d = layout.spec.sizes[0]
        self.m1 = layout.spec.sizes[1]
        self.act1 = layout.spec.acts[0]

    def __dealloc__(self):
        PyMem_Free(self.members)

    def failed(self, Py_ssize_t k):
        """True once network k met a non-finite batch loss (it then stopped)."""
        return bool(self.members[k].failed)

    def retire(self, Py_ssize_t k):
        """Train network k no further (the others go on)."""
        self.members[k].retired = True

    def workspace_size(self, Py_ssize_t B):
        """Elements of bank_train's workspace for batches of up to B rows:
        Z¹, A¹, δ¹ and the dropout masks of the wide layer (B × K·m₁ each), the
        batch's X, Y and per-network weights, one network's block of A¹, and
        the workspace of one network's layers 2…L (shared: they run in turn)."""
        cdef const Spec* sub = &self.members[0].sub
        return self.batch_offset(B, 4) + layer_offset(sub, B, sub.n_layers)

    cdef Py_ssize_t batch_offset(self, Py_ssize_t B, int part) noexcept nogil:
        """Where a part of the workspace starts: 0 Xb, 1 Yb, 2 the weights
        (K × B), 3 one network's block of A¹, 4 its layers' workspace."""
        cdef const Spec* sub = &self.members[0].sub
        cdef Py_ssize_t widths[4]
        widths[0] = self.d
        widths[1] = sub.sizes[sub.n_layers]
        widths[2] = self.size
        widths[3] = self.m1
        cdef Py_ssize_t off = 4 * B * self.size * self.m1, i
        for i in range(part):
            off += B * widths[i]
        return off


cdef bint same_first_step(Bank bank) noexcept nogil:
    """True when one wide layer_step gives every network its own first-layer
    step: all take part, with equal hyper-parameters, step counts and L2 α."""
    cdef Py_ssize_t k, j
    cdef const Member* a = &bank.members[0]
    cdef const Member* b
    for k in range(bank.size):
        b = &bank.members[k]
        if not b.running or b.t[0] != a.t[0] or b.sub.alpha != a.sub.alpha:
            return False
        for j in range(HP_EPS + 1):
            if b.hp[j] != a.hp[j]:
                return False
    return True


cdef double member_l2(const Member* m, const floating* W1, Py_ssize_t ld, Py_ssize_t d,
                      Py_ssize_t m1) noexcept nogil:
    """α/2·Σ‖W‖² of a banked network: its first layer's block of the wide W
    (row stride ld), then its own deeper layers, summed in add_l2's order."""
    cdef const Spec* s = &m.sub
    cdef const floating* theta = <const floating*> m.theta + d * m1 + m1
    cdef Py_ssize_t l, i, j, p = 0, nw
    cdef double sq = 0
    for i in range(d):
        for j in range(m1):
            sq += <double> W1[i * ld + j] * W1[i * ld + j]
    for l in range(s.n_layers):
        nw = s.sizes[l] * s.sizes[l + 1]
        for i in range(p, p + nw):
            sq += <double> theta[i] * theta[i]
        p += nw + s.sizes[l + 1]
    return 0.5 * s.alpha * sq


cdef void bank_step(Bank bank, floating* wide, floating* wide_grad, floating* wide_state,
                    floating* scratch, const floating* Yb, const floating* wb,
                    Py_ssize_t w_stride, Py_ssize_t nb, floating* ws, Py_ssize_t B,
                    double* results) noexcept nogil:
    """One batch (already in the workspace) for every network of the bank
    (network k's row weights at wb + k·w_stride; wb NULL: unweighted):
    the wide first layer forward, each network's layers 2…L forward, loss and
    fused backward step (forming its block of the wide δ¹), then the wide
    σ' and the first layer's step. results gets, per network, the batch's
    loss × rows, rows and rows classified right (added)."""
    cdef Py_ssize_t K = bank.size, d = bank.d, m1 = bank.m1, KM = K * m1
    cdef Py_ssize_t i, j, k, p1 = d * m1 + m1, off
    cdef Py_ssize_t correct
    cdef floating* Z1 = ws
    cdef floating* A1 = Z1 + B * KM
    cdef floating* dZ1 = A1 + B * KM
    cdef floating* M1 = dZ1 + B * KM
    cdef const floating* Xb = ws + bank.batch_offset(B, 0)
    cdef floating* Ak = ws + bank.batch_offset(B, 3)
    cdef floating* sub_ws = ws + bank.batch_offset(B, 4)
    cdef floating* s2 = wide_state + (d + 1) * KM
    cdef floating* Wi
    cdef floating* gi
    cdef Member* m
    cdef double loss
    cdef bint plain = True
    gemm(False, False, <int> nb, <int> KM, <int> d, <floating> 1, Xb, <int> d, wide,
         <int> KM, <floating> 0, Z1, <int> KM)
    bias_activation_forward(bank.act1, Z1, A1, wide + d * KM, nb, KM)
    for k in range(K):
        m = &bank.members[k]
        if m.running and m.dropout1 > 0:
            plain = False
            for i in range(nb):
                dropout_forward(A1 + i * KM + k * m1, M1 + i * KM + k * m1, m1, m.dropout1,
                                m.sub.rng)
    for k in range(K):
        m = &bank.members[k]
        if m.running:
            for i in range(nb):
                memcpy(Ak + i * m1, A1 + i * KM + k * m1, m1 * sizeof(floating))
            batch_alpha(&m.sub, m.wsum)
            correct = 0
            loss = forward_loss(&m.sub, <const floating*> m.theta + p1, Ak, Yb,
                                wb + k * w_stride if wb != NULL else NULL, nb, m.wsum,
                                sub_ws, B,
                                &correct)
            if m.sub.alpha != 0:
                loss += member_l2(m, wide + k * m1, KM, d, m1)
            if not isfinite(loss):
                m.failed = True
                m.running = False
            else:
                m.t[0] += 1
                backward_update(&m.sub, <floating*> m.theta + p1, scratch + p1,
                                <floating*> m.state + p1, m.n_params, bank.kind, m.hp,
                                m.t[0], Ak, nb, sub_ws, B, dZ1 + k * m1, KM, NULL, NULL, 0)
                results[3 * k] += loss * nb
                results[3 * k + 1] += nb
                results[3 * k + 2] += correct
        if not m.running:
            plain = False
            for i in range(nb):
                memset(dZ1 + i * KM + k * m1, 0, m1 * sizeof(floating))
    # δ¹ = σ'(Z¹) ⊙ (δ²·W²ᵀ) (⊙ the dropout mask), over the wide block at once
    # where no network drops units of its first layer or sits this batch out.
    if plain:
        activation_backward(bank.act1, Z1, A1, dZ1, nb * KM)
    else:
        for k in range(K):
            m = &bank.members[k]
            if not m.running:
                continue
            for i in range(nb):
                off = i * KM + k * m1
                if m.dropout1 > 0:
                    dropout_activation_backward(bank.act1, Z1 + off, M1 + off, dZ1 + off, m1)
                else:
                    activation_backward(bank.act1, Z1 + off, A1 + off, dZ1 + off, m1)
    column_sums(dZ1, nb, KM, wide_grad + d * KM, False)
    if same_first_step(bank):
        # Everyone's step at once: what the network's own fit does, K·m₁ units wide.
        m = &bank.members[0]
        layer_step(bank.kind, m.hp, m.t[0], m.sub.alpha, Xb, NULL, dZ1, nb, d, KM, wide,
                   wide_grad, wide_state, s2, False)
        return
    gemm(True, False, <int> d, <int> KM, <int> nb, <floating> 1, Xb, <int> d, dZ1, <int> KM,
         <floating> 0, wide_grad, <int> KM)
    for k in range(K):
        m = &bank.members[k]
        if not m.running:
            continue
        for i in range(d + 1):
            off = i * KM + k * m1
            Wi = wide + off
            gi = wide_grad + off
            if i < d and m.sub.alpha != 0:        # the L2 term's gradient αW (not b)
                for j in range(m1):
                    gi[j] += <floating> m.sub.alpha * Wi[j]
            update_slice(bank.kind, m.hp, m.t[0], Wi, gi, wide_state + off, s2 + off, m1)


def bank_train(Bank bank, floating[::1] wide, floating[::1] wide_grad,
               floating[::1] wide_state, floating[::1] scratch, const floating[:, ::1] X,
               const floating[:, ::1] Y, const floating[:, ::1] w,
               const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t stop,
               Py_ssize_t B, floating[::1] ws, double[:, ::1] results):
    """Train every network of the bank on the rows order[start:stop], in
    batches of B, in place: θ of layers 2…L in each network's θ, the first
    layer in `wide` ((d + 1)·K·m₁: [W¹₁ … W¹_K] then the biases) with its
    optimizer state in wide_state (stacked buffers of that size) and scratch
    wide_grad; scratch is θ-sized.

    w holds per-row weights: (K, n), one row per network (a network whose
    batch weighs 0 sits the batch out), (1, n) shared, or (0, n) for none.
    results (K × 3) gets, per network, Σ batch loss × rows, rows trained and
    rows classified right. A network whose batch loss is not finite stops
    before that batch's update (`Bank.failed`); the others go on."""
    cdef Py_ssize_t K = bank.size, d = X.shape[1], k_out = Y.shape[1]
    cdef Py_ssize_t pos = start, nb, i, k, r
    cdef floating* Xb = &ws[0] + bank.batch_offset(B, 0)
    cdef floating* Yb = &ws[0] + bank.batch_offset(B, 1)
    cdef floating* wb = &ws[0] + bank.batch_offset(B, 2)
    cdef Py_ssize_t n_weights = w.shape[0], w_stride = B if n_weights > 1 else 0
    cdef Member* m
    with nogil:
        while pos < stop:
            nb = min(B, stop - pos)
            for i in range(nb):
                r = order[pos + i]
                memcpy(Xb + i * d, &X[r, 0], d * sizeof(floating))
                memcpy(Yb + i * k_out, &Y[r, 0], k_out * sizeof(floating))
            for k in range(K):
                m = &bank.members[k]
                if n_weights == 0:
                    m.wsum = nb
                elif k < n_weights:
                    m.wsum = 0
                    for i in range(nb):
                        wb[k * B + i] = w[k, order[pos + i]]
                        m.wsum += wb[k * B + i]
                else:       # one row of weights for all
                    m.wsum = bank.members[0].wsum
                m.running = not m.failed and not m.retired and m.wsum > 0
            bank_step(bank, &wide[0], &wide_grad[0], &wide_state[0], &scratch[0], Yb,
                      wb if n_weights > 0 else NULL, w_stride, nb, &ws[0], B,
                      &results[0, 0])
            pos += nb
