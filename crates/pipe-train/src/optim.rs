//! Adam, exactly as `torch.optim.Adam` computes it (bias correction, eps added
//! after the square root, optional L2 weight decay), in one fused pass over
//! parameter, gradient and both moments. On the CPU the pass is split across
//! torch's own threads; elsewhere it runs as torch ops on the device.
//!
//! An embedding table can also have its idle rows' updates deferred
//! ([`Adam::defer_idle_rows`]): still `torch.optim.Adam`'s dense update, bit
//! for bit, but each row's share of it runs when something next reads the
//! row, in cache, instead of as a pass over the whole table every step.

use pipe_runtime::cpu::{simd_level, SimdLevel};
use pipe_runtime::parallel;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam state for a fixed list of parameters.
///
/// Gradients come from `Tensor::run_backward` rather than the parameters'
/// `.grad`, so there is nothing to zero between steps. On the CPU each
/// parameter gets one fused, multi-threaded pass. Elsewhere (a GPU) the
/// parameters are moved into one flat buffer they then view, and the update
/// runs as a handful of kernels over all of them at once: kernel launches,
/// not arithmetic, bound a small model's step there.
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Tensor>,
    state: State,
    step: u64,
    /// Per parameter: the step each row was last brought to, for tables
    /// whose idle rows are updated late (`defer_idle_rows`).
    deferred: Vec<Option<Vec<u64>>>,
    /// The scalars of every step so far (index: step - 1), which late
    /// updates replay; kept only while some table is deferred.
    history: Vec<StepScalars>,
    /// Bias corrections of the current step: 1 - beta1^t, 1 - beta2^t.
    bias: (f64, f64),
    /// The per-step scalars as device tensors, for a recorded update.
    device_scalars: Option<DeviceScalars>,
}

/// What changes from step to step, where a recorded (CUDA graph) update
/// reads it: 0-dim tensors on the parameters' device, filled before each
/// step's kernels.
struct DeviceScalars {
    /// -lr / (1 - beta1^t)
    neg_step_size: Tensor,
    /// 1 / sqrt(1 - beta2^t)
    inv_bias2_sqrt: Tensor,
}

enum State {
    PerTensor {
        exp_avg: Vec<Tensor>,
        exp_avg_sq: Vec<Tensor>,
    },
    Flat {
        param: Tensor,
        exp_avg: Tensor,
        exp_avg_sq: Tensor,
    },
}

impl Adam {
    /// Per-tensor fused passes for float32 parameters on the CPU, the flat
    /// buffer elsewhere.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Adam {
        let on_cpu = params.iter().all(cpu_f32_contiguous);
        Self::with_layout(params, config, !on_cpu)
    }

    /// Like [`new`](Self::new), but never the flat layout: for models whose
    /// gradients may be sparse (they cannot be concatenated into one buffer).
    pub fn per_tensor(params: Vec<Tensor>, config: AdamConfig) -> Adam {
        Self::with_layout(params, config, false)
    }

    /// Chooses the layout explicitly (`flat`: one buffer for all parameters).
    pub fn with_layout(params: Vec<Tensor>, config: AdamConfig, flat: bool) -> Adam {
        let state = if !flat || params.is_empty() {
            State::PerTensor {
                exp_avg: params.iter().map(Tensor::zeros_like).collect(),
                exp_avg_sq: params.iter().map(Tensor::zeros_like).collect(),
            }
        } else {
            let flat = tch::no_grad(|| {
                Tensor::cat(
                    &params
                        .iter()
                        .map(|p| p.detach().reshape([-1]))
                        .collect::<Vec<_>>(),
                    0,
                )
            });
            let mut offset = 0;
            for p in &params {
                let n = p.numel() as i64;
                let mut p = p.shallow_clone();
                let view = flat.narrow(0, offset, n).view(p.size().as_slice());
                tch::no_grad(|| p.set_data(&view));
                offset += n;
            }
            State::Flat {
                exp_avg: flat.zeros_like(),
                exp_avg_sq: flat.zeros_like(),
                param: flat,
            }
        };
        let deferred = vec![None; params.len()];
        Adam {
            config,
            params,
            state,
            step: 0,
            deferred,
            history: Vec::new(),
            bias: (0.0, 0.0),
            device_scalars: None,
        }
    }

    /// Keeps the per-step scalars (learning rate over the first moment's
    /// bias correction, the second's) in device tensors that
    /// [`begin_step`](Self::begin_step) fills, instead of passing them to
    /// the kernels as constants: a recorded [`apply`](Self::apply) (a CUDA
    /// graph) then reads each replay's own step. Flat layout only.
    pub fn read_step_scalars_on_device(&mut self) -> Result<(), AdamError> {
        let State::Flat { param, .. } = &self.state else {
            return Err(AdamError::DeviceScalarsNeedFlatLayout);
        };
        let scalar = || Tensor::zeros([], (param.kind(), param.device()));
        self.device_scalars = Some(DeviceScalars {
            neg_step_size: scalar(),
            inv_bias2_sqrt: scalar(),
        });
        Ok(())
    }

    /// Defers the updates of parameter `param`'s idle rows: its gradient then
    /// comes sparse (an embedding built with sparse gradients), and each step
    /// updates only the rows it names. The rows a step skips owe Adam's
    /// update with a zero gradient (moments decay, the row still moves);
    /// [`catch_up_rows`](Self::catch_up_rows) and [`catch_up`](Self::catch_up)
    /// replay what they owe through the same kernel, so the result is the
    /// eager dense update's, bit for bit. Whoever reads the table must catch
    /// up the rows it reads first: a forward pass its batch's ids, anything
    /// reading the whole table (a checkpoint, a validation pass) all of it.
    ///
    /// Only for 2-D float32 contiguous CPU tables, before the first step, and
    /// without gradient clipping (the norm would need the dense gradient).
    pub fn defer_idle_rows(&mut self, param: usize) -> Result<(), AdamError> {
        let p = self
            .params
            .get(param)
            .ok_or(AdamError::NoParameter(param))?;
        if !cpu_f32_contiguous(p) || p.dim() != 2 || !matches!(self.state, State::PerTensor { .. })
        {
            return Err(AdamError::DeferredRowsNeedCpuTable);
        }
        if self.step > 0 {
            return Err(AdamError::DeferredRowsAfterFirstStep);
        }
        self.deferred[param] = Some(vec![0; p.size()[0] as usize]);
        Ok(())
    }

    /// Brings the rows of deferred parameter `param` named in `ids` (any
    /// shape, int64) up to the current step.
    pub fn catch_up_rows(&mut self, param: usize, ids: &Tensor) {
        let ids: Vec<i64> =
            Vec::<i64>::try_from(&ids.reshape([-1]).to_device(Device::Cpu)).expect("int64 ids");
        self.catch_up_where(param, |done| {
            let mut rows: Vec<usize> = ids.iter().map(|&r| r as usize).collect();
            rows.sort_unstable();
            rows.dedup();
            rows.retain(|&r| r < done.len());
            rows
        });
    }

    /// Brings every row of every deferred parameter up to the current step.
    pub fn catch_up(&mut self) {
        for param in 0..self.params.len() {
            self.catch_up_where(param, |done| (0..done.len()).collect());
        }
    }

    fn catch_up_where(&mut self, param: usize, rows: impl FnOnce(&[u64]) -> Vec<usize>) {
        let (step, threads) = (self.step, parallel::threads());
        let State::PerTensor {
            exp_avg,
            exp_avg_sq,
        } = &self.state
        else {
            return;
        };
        let Some(done) = self.deferred[param].as_mut() else {
            return;
        };
        let owed: Vec<(usize, usize)> = rows(done)
            .into_iter()
            .filter(|&r| done[r] < step)
            .map(|r| (r, done[r] as usize))
            .collect();
        let table = TableSlices::of(&self.params[param], &exp_avg[param], &exp_avg_sq[param]);
        replay_idle_rows(table, &owed, &self.history[..step as usize], threads);
        for &(r, _) in &owed {
            done[r] = step;
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Backpropagates `loss` and applies one update, clipping the global
    /// gradient norm to `clip` first when given (as `clip_grad_norm_`).
    pub fn backward_step(&mut self, loss: &Tensor, clip: Option<f64>) -> Result<(), AdamError> {
        let grads = Tensor::run_backward(&[loss], &self.params, false, false);
        self.step(grads, clip)
    }

    /// One update from gradients in the order of the parameters:
    /// [`begin_step`](Self::begin_step), then [`apply`](Self::apply).
    pub fn step(&mut self, grads: Vec<Tensor>, clip: Option<f64>) -> Result<(), AdamError> {
        self.check_gradients(&grads, clip)?;
        self.begin_step();
        self.apply(grads, clip)
    }

    /// What [`apply`](Self::apply) requires of the gradients: one per
    /// parameter, of its shape (the fused CPU kernels read them as slices of
    /// the parameter's length), and no clipping with deferred rows.
    fn check_gradients(&self, grads: &[Tensor], clip: Option<f64>) -> Result<(), AdamError> {
        if self.deferred.iter().any(Option::is_some) && clip.is_some() {
            return Err(AdamError::ClipWithDeferredRows);
        }
        if grads.len() != self.params.len() {
            return Err(AdamError::GradientCount {
                params: self.params.len(),
                grads: grads.len(),
            });
        }
        if let Some((index, (p, g))) = self
            .params
            .iter()
            .zip(grads)
            .enumerate()
            .find(|(_, (p, g))| p.size() != g.size())
        {
            return Err(AdamError::GradientShape {
                index,
                param: p.size(),
                grad: g.size(),
            });
        }
        Ok(())
    }

    /// Advances the step count and sets the step's scalars (on the device,
    /// with [`read_step_scalars_on_device`](Self::read_step_scalars_on_device)):
    /// the host's part of a step, which a recorded graph cannot contain.
    pub fn begin_step(&mut self) {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        self.bias = (bias1, bias2);
        if self.deferred.iter().any(Option::is_some) {
            // 28 bytes a step: a few hundred kB for a long run.
            self.history.push(StepScalars::new(c, bias1, bias2));
        }
        if let Some(scalars) = &self.device_scalars {
            // A fill passes its value as a kernel argument: no host-to-device
            // copy, so no sync.
            tch::no_grad(|| {
                let _ = scalars.neg_step_size.shallow_clone().fill_(-c.lr / bias1);
                let _ = scalars
                    .inv_bias2_sqrt
                    .shallow_clone()
                    .fill_(1.0 / bias2.sqrt());
            });
        }
    }

    /// The update's kernels for the step [`begin_step`](Self::begin_step)
    /// began, from gradients in the order of the parameters.
    ///
    /// The gradients are checked against the parameters (one each, of its
    /// shape) before anything is read: the fused CPU kernels read them as raw
    /// slices of the parameter's length.
    pub fn apply(&mut self, grads: Vec<Tensor>, clip: Option<f64>) -> Result<(), AdamError> {
        let c = self.config;
        let (bias1, bias2) = self.bias;
        if self.step == 0 {
            return Err(AdamError::NotBegun);
        }
        self.check_gradients(&grads, clip)?;
        let (step, threads) = (self.step, parallel::threads());
        tch::no_grad(|| match &self.state {
            State::PerTensor {
                exp_avg,
                exp_avg_sq,
            } => {
                if let Some(max) = clip {
                    clip_norm(&grads, max);
                }
                for i in 0..self.params.len() {
                    let (p, g) = (&self.params[i], &grads[i]);
                    if let Some(done) = self.deferred[i].as_mut() {
                        let table = TableSlices::of(p, &exp_avg[i], &exp_avg_sq[i]);
                        deferred_step(table, g, done, &self.history[..step as usize], threads);
                    } else if g.is_sparse() {
                        if [p, &exp_avg[i], &exp_avg_sq[i]]
                            .into_iter()
                            .all(cpu_f32_contiguous)
                            && g.kind() == Kind::Float
                            && g.sparse_dim() == 1
                        {
                            fused_sparse_cpu_step(
                                p,
                                g,
                                &exp_avg[i],
                                &exp_avg_sq[i],
                                c,
                                bias1,
                                bias2,
                            );
                        } else {
                            sparse_step(p, g, &exp_avg[i], &exp_avg_sq[i], c, bias1, bias2);
                        }
                    } else if [p, g, &exp_avg[i], &exp_avg_sq[i]]
                        .into_iter()
                        .all(cpu_f32_contiguous)
                    {
                        fused_cpu_step(p, g, &exp_avg[i], &exp_avg_sq[i], c, bias1, bias2, threads);
                    } else {
                        tensor_step(
                            p,
                            g,
                            &exp_avg[i],
                            &exp_avg_sq[i],
                            c,
                            ScalarsFrom::Host { bias1, bias2 },
                        );
                    }
                }
            }
            State::Flat {
                param,
                exp_avg,
                exp_avg_sq,
            } => {
                let grad = Tensor::cat(
                    &grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
                    0,
                );
                if let Some(max) = clip {
                    clip_norm(std::slice::from_ref(&grad), max);
                }
                let scalars = match &self.device_scalars {
                    Some(scalars) => ScalarsFrom::Device(scalars),
                    None => ScalarsFrom::Host { bias1, bias2 },
                };
                tensor_step(param, &grad, exp_avg, exp_avg_sq, c, scalars);
            }
        });
        Ok(())
    }
}

/// Why an update was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdamError {
    #[error("apply before begin_step")]
    NotBegun,
    #[error(
        "gradient clipping needs the dense gradient: it cannot be combined with deferred rows"
    )]
    ClipWithDeferredRows,
    #[error("{grads} gradients for {params} parameters")]
    GradientCount { params: usize, grads: usize },
    #[error("gradient {index} has shape {grad:?}, its parameter {param:?}")]
    GradientShape {
        index: usize,
        param: Vec<i64>,
        grad: Vec<i64>,
    },
    #[error("step scalars on the device need the flat layout")]
    DeviceScalarsNeedFlatLayout,
    #[error("no parameter {0}")]
    NoParameter(usize),
    #[error("deferred rows need a 2-D float32 CPU table in the per-tensor layout")]
    DeferredRowsNeedCpuTable,
    #[error("deferred rows must be set up before the first step")]
    DeferredRowsAfterFirstStep,
}

/// What the fused CPU loops can read as a plain `&[f32]`.
fn cpu_f32_contiguous(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// Lazy Adam for a sparse gradient (`torch.optim.SparseAdam`'s update): only
/// the rows present in the gradient have their moments and values updated.
fn sparse_step(
    p: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: AdamConfig,
    bias1: f64,
    bias2: f64,
) {
    let grad = grad.coalesce();
    let rows = grad.internal_indices().select(0, 0);
    let values = grad.internal_values();
    let (mut m, mut v, mut p) = (m.shallow_clone(), v.shallow_clone(), p.shallow_clone());
    let m_rows = m.index_select(0, &rows).lerp(&values, 1.0 - c.beta1);
    let v_rows = v.index_select(0, &rows) * c.beta2 + values.square() * (1.0 - c.beta2);
    // SparseAdam adds eps before the bias correction, folded into the step size.
    let denom = v_rows.sqrt() + c.eps;
    let update = (&m_rows / denom) * (-c.lr * bias2.sqrt() / bias1);
    let _ = p.index_add_(0, &rows, &update);
    let _ = m.index_copy_(0, &rows, &m_rows);
    let _ = v.index_copy_(0, &rows, &v_rows);
}

/// The same lazy update in one pass on the CPU: duplicate rows of the
/// uncoalesced gradient (an embedding's gradient has one row per token) are
/// summed, as `coalesce` would, then each used row of the parameter and its
/// moments is updated in place. About 8 torch ops and their temporaries per
/// step become one loop.
fn fused_sparse_cpu_step(
    p: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: AdamConfig,
    bias1: f64,
    bias2: f64,
) {
    let mut table = TableSlices::of(p, m, v);
    let (one_minus_b1, b2, one_minus_b2, eps) = (
        (1.0 - c.beta1) as f32,
        c.beta2 as f32,
        (1.0 - c.beta2) as f32,
        c.eps as f32,
    );
    let step_size = (-c.lr * bias2.sqrt() / bias1) as f32;
    for_each_gradient_row(grad, table.width, |row, sum| {
        let (p, m, v) = table.row(row);
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(sum) {
            *m += (g - *m) * one_minus_b1;
            *v = *v * b2 + g * g * one_minus_b2;
            *p += *m / (v.sqrt() + eps) * step_size;
        }
    });
}

/// Calls `f(row, gradient)` for each row an uncoalesced sparse gradient of
/// a `width`-wide table names, rows ascending, its repeats (an embedding's
/// gradient has one row per token) summed in order, as `coalesce` would.
fn for_each_gradient_row(grad: &Tensor, width: usize, mut f: impl FnMut(usize, &[f32])) {
    let rows: Vec<i64> =
        Vec::<i64>::try_from(&grad.internal_indices().reshape([-1])).expect("int64 indices");
    let values = grad.internal_values().contiguous();
    if rows.is_empty() || width == 0 {
        return;
    }
    assert_eq!(values.kind(), Kind::Float, "float32 gradient values");
    assert_eq!(
        values.numel(),
        rows.len() * width,
        "one gradient row of the table's width per index"
    );
    // SAFETY: `values` is a contiguous f32 CPU tensor of rows × width
    // elements (checked above) that lives to the end of this function.
    let gv =
        unsafe { std::slice::from_raw_parts(values.data_ptr() as *const f32, rows.len() * width) };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&e| rows[e]);
    let mut sum = vec![0f32; width];
    let mut start = 0;
    while start < order.len() {
        let row = rows[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&e| rows[e] == row)
                .count();
        sum.copy_from_slice(&gv[order[start] * width..][..width]);
        for &e in &order[start + 1..end] {
            sum.iter_mut()
                .zip(&gv[e * width..][..width])
                .for_each(|(s, g)| *s += g);
        }
        f(row as usize, &sum);
        start = end;
    }
}

/// A table, its two moments and its row width, as plain slices.
struct TableSlices<'a> {
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    width: usize,
}

impl<'a> TableSlices<'a> {
    /// The parameter and its moments (made with zeros_like(p)), which the
    /// optimizer alone touches while it runs.
    fn of(p: &'a Tensor, m: &'a Tensor, v: &'a Tensor) -> TableSlices<'a> {
        let n = p.numel();
        assert!(
            [p, m, v]
                .into_iter()
                .all(|t| cpu_f32_contiguous(t) && t.numel() == n)
                && p.dim() >= 1,
            "an f32 CPU table and its moments"
        );
        let rows = p.size()[0] as usize;
        // SAFETY: three contiguous f32 CPU tensors of n elements (checked
        // above), not otherwise accessed during the step; every later access
        // goes through bounds-checked slices.
        unsafe {
            TableSlices {
                p: std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
                m: std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
                v: std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
                width: n.checked_div(rows).unwrap_or(0),
            }
        }
    }

    /// Row `r` of the table and of each moment.
    fn row(&mut self, r: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let at = r * self.width..(r + 1) * self.width;
        (
            &mut self.p[at.clone()],
            &mut self.m[at.clone()],
            &mut self.v[at],
        )
    }

    fn reborrow(&mut self) -> TableSlices<'_> {
        TableSlices {
            p: &mut *self.p,
            m: &mut *self.m,
            v: &mut *self.v,
            width: self.width,
        }
    }

    /// Splits off rows `..r` (returned) from `r..` (kept, renumbered from 0).
    fn split_off_front(&mut self, r: usize) -> TableSlices<'a> {
        let at = r * self.width;
        let (p, rest_p) = std::mem::take(&mut self.p).split_at_mut(at);
        let (m, rest_m) = std::mem::take(&mut self.m).split_at_mut(at);
        let (v, rest_v) = std::mem::take(&mut self.v).split_at_mut(at);
        (self.p, self.m, self.v) = (rest_p, rest_m, rest_v);
        TableSlices {
            p,
            m,
            v,
            width: self.width,
        }
    }
}

/// One step of a deferred table. A sparse gradient (one row per token,
/// repeats summed in order as `coalesce` does) updates the rows it names,
/// after they replay the steps they were idle for; other rows wait. A dense
/// gradient updates every row (after all catch up).
fn deferred_step(
    mut table: TableSlices,
    grad: &Tensor,
    done: &mut [u64],
    history: &[StepScalars],
    threads: usize,
) {
    let step = history.len() as u64;
    let k = *history.last().expect("the current step's scalars");
    if !grad.is_sparse() {
        let owed: Vec<(usize, usize)> = (0..done.len())
            .filter(|&r| done[r] + 1 < step)
            .map(|r| (r, done[r] as usize))
            .collect();
        replay_idle_rows(
            table.reborrow(),
            &owed,
            &history[..history.len() - 1],
            threads,
        );
        let dense = grad.contiguous();
        let n = table.p.len();
        assert!(
            cpu_f32_contiguous(&dense) && dense.numel() == n,
            "a dense f32 CPU gradient of the table's shape"
        );
        // SAFETY: n contiguous f32 CPU values (checked above).
        let g = unsafe { std::slice::from_raw_parts(dense.data_ptr() as *const f32, n) };
        adam_chunk(table.p, g, table.m, table.v, k);
        done.iter_mut().for_each(|d| *d = step);
        return;
    }
    let zeros = vec![0f32; table.width];
    for_each_gradient_row(grad, table.width, |row, sum| {
        let (p, m, v) = table.row(row);
        replay_idle(
            p,
            m,
            v,
            &zeros,
            &history[done[row] as usize..history.len() - 1],
        );
        adam_chunk(p, sum, m, v, k);
        done[row] = step;
    });
}

/// Replays, for each `(row, from)` (rows ascending), the steps `from..` of
/// `history` with a zero gradient: the updates the row skipped while idle.
/// Split across threads by rows when there is enough of it.
fn replay_idle_rows(
    mut table: TableSlices,
    owed: &[(usize, usize)],
    history: &[StepScalars],
    threads: usize,
) {
    let width = table.width;
    let zeros = vec![0f32; width];
    let total = owed
        .iter()
        .map(|&(_, from)| history.len() - from)
        .sum::<usize>()
        * width;
    const MIN_PER_THREAD: usize = 1 << 16;
    let threads = threads.min(total / MIN_PER_THREAD).max(1);
    if threads == 1 {
        for &(r, from) in owed {
            let (p, m, v) = table.row(r);
            replay_idle(p, m, v, &zeros, &history[from..]);
        }
        return;
    }
    // Contiguous groups of rows with about equal work; each thread gets the
    // part of the table from its first row to the next group's.
    let mut groups = Vec::with_capacity(threads);
    let (mut begin, mut acc, mut first_row) = (0, 0, 0);
    for (i, &(_, from)) in owed.iter().enumerate() {
        acc += (history.len() - from) * width;
        if acc * threads >= total * (groups.len() + 1) || i + 1 == owed.len() {
            let next_row = owed
                .get(i + 1)
                .map_or(table.p.len() / width.max(1) + first_row, |&(r, _)| r);
            let part = table.split_off_front(next_row - first_row);
            groups.push((part, first_row, &owed[begin..=i]));
            begin = i + 1;
            first_row = next_row;
        }
    }
    parallel::for_each(groups, |(mut part, base, rows)| {
        for &(r, from) in rows {
            let (p, m, v) = part.row(r - base);
            replay_idle(p, m, v, &zeros, &history[from..]);
        }
    });
}

/// The dense kernel, step after step, with a zero gradient: exactly what an
/// eager update of an idle row computes.
fn replay_idle(p: &mut [f32], m: &mut [f32], v: &mut [f32], zeros: &[f32], steps: &[StepScalars]) {
    let level = simd_level();
    for &k in steps {
        adam_chunk_at(level, p, zeros, m, v, k);
    }
}

/// Scales gradients in place so their global L2 norm is at most `max`.
fn clip_norm(grads: &[Tensor], max: f64) {
    let squares: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
    let total = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
    let scale = (total + 1e-6).reciprocal().g_mul_scalar(max).clamp_max(1.0);
    for g in grads {
        let _ = g.shallow_clone().g_mul_(&scale);
    }
}

/// Where [`tensor_step`] takes the step's scalars from.
enum ScalarsFrom<'a> {
    /// Constants computed from the bias corrections 1 - beta1^t, 1 - beta2^t.
    Host { bias1: f64, bias2: f64 },
    /// Tensors filled before the kernels run (a recorded update).
    Device(&'a DeviceScalars),
}

/// The same update as torch ops (for GPUs and unusual dtypes).
fn tensor_step(
    p: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: AdamConfig,
    scalars: ScalarsFrom,
) {
    let grad = if c.weight_decay != 0.0 {
        grad + p * c.weight_decay
    } else {
        grad.shallow_clone()
    };
    let (mut m, mut v, mut p) = (m.shallow_clone(), v.shallow_clone(), p.shallow_clone());
    let _ = m.lerp_(&grad, 1.0 - c.beta1);
    let _ = v
        .g_mul_scalar_(c.beta2)
        .addcmul_(&grad, &grad.g_mul_scalar(1.0 - c.beta2));
    let (denom, update) = match scalars {
        ScalarsFrom::Host { bias1, bias2 } => (
            (v.sqrt() / bias2.sqrt()) + c.eps,
            m.g_mul_scalar(-c.lr / bias1),
        ),
        ScalarsFrom::Device(d) => (
            (v.sqrt() * &d.inv_bias2_sqrt) + c.eps,
            &m * &d.neg_step_size,
        ),
    };
    let _ = p.addcdiv_(&update, &denom);
}

/// Scalars of one update, in float32 as torch's kernels use them.
#[derive(Clone, Copy)]
struct StepScalars {
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    wd: f32,
    step_size: f32,
    inv_bias2_sqrt: f32,
    eps: f32,
}

impl StepScalars {
    fn new(c: AdamConfig, bias1: f64, bias2: f64) -> StepScalars {
        StepScalars {
            one_minus_b1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            one_minus_b2: (1.0 - c.beta2) as f32,
            wd: c.weight_decay as f32,
            step_size: (c.lr / bias1) as f32,
            inv_bias2_sqrt: (1.0 / bias2.sqrt()) as f32,
            eps: c.eps as f32,
        }
    }
}

/// The update over one chunk. `$fma` picks fused multiply-adds where torch's
/// vectorised kernels use them (lerp, addcmul); the loop is written with
/// iterators so it vectorises.
macro_rules! adam_kernel {
    ($name:ident, $fma:expr) => {
        #[inline(always)]
        fn $name(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: StepScalars) {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = if k.wd != 0.0 { g + k.wd * *p } else { g };
                if $fma {
                    *m = (g - *m).mul_add(k.one_minus_b1, *m);
                    *v = (k.one_minus_b2 * g).mul_add(g, *v * k.b2);
                } else {
                    *m += (g - *m) * k.one_minus_b1;
                    *v = *v * k.b2 + k.one_minus_b2 * g * g;
                }
                let denom = v.sqrt() * k.inv_bias2_sqrt + k.eps;
                *p -= k.step_size * *m / denom;
            }
        }
    };
}

adam_kernel!(adam_chunk_fma, true);
adam_kernel!(adam_chunk_plain, false);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_chunk_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: StepScalars) {
    adam_chunk_fma(p, g, m, v, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn adam_chunk_avx512(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: StepScalars,
) {
    adam_chunk_fma(p, g, m, v, k)
}

/// The kernel for the level this machine runs ([`pipe_runtime::cpu::simd_level`]:
/// the CPU's widest, capped by `ONEDNN_MAX_CPU_ISA`).
fn adam_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: StepScalars) {
    adam_chunk_at(simd_level(), p, g, m, v, k)
}

/// The kernel compiled for `level`. A level this CPU lacks falls back to
/// the scalar kernel; the check is what makes the `unsafe` calls sound.
fn adam_chunk_at(
    level: SimdLevel,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: StepScalars,
) {
    assert!(
        g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "Adam's slices differ in length"
    );
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: `supported()` checked at run time that the CPU has the
        // features each function is compiled for.
        SimdLevel::Avx512 if level.supported() => {
            return unsafe { adam_chunk_avx512(p, g, m, v, k) }
        }
        SimdLevel::Avx2Fma if level.supported() => {
            return unsafe { adam_chunk_avx2(p, g, m, v, k) }
        }
        _ => {}
    }
    let _ = level;
    // Without hardware FMA, `mul_add` would be a slow library call.
    if cfg!(target_feature = "fma") {
        adam_chunk_fma(p, g, m, v, k)
    } else {
        adam_chunk_plain(p, g, m, v, k)
    }
}

#[allow(clippy::too_many_arguments)]
fn fused_cpu_step(
    p: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: AdamConfig,
    bias1: f64,
    bias2: f64,
    threads: usize,
) {
    let n = p.numel();
    // What the slices below rely on; `apply` checked it, this keeps it true
    // for any other caller.
    assert!(
        [p, grad, m, v]
            .into_iter()
            .all(|t| cpu_f32_contiguous(t) && t.numel() == n),
        "fused Adam needs four contiguous f32 CPU tensors of one length"
    );
    // SAFETY: all four tensors are contiguous f32 CPU tensors of `n` elements
    // (asserted above); nothing else touches them during the step, and each
    // thread gets a disjoint range.
    let (pp, gp, mp, vp) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(grad.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
        )
    };
    let k = StepScalars::new(c, bias1, bias2);
    const MIN_CHUNK: usize = 1 << 16;
    if threads <= 1 || n < 2 * MIN_CHUNK {
        adam_chunk(pp, gp, mp, vp, k);
        return;
    }
    let chunk = n.div_ceil(threads);
    let parts = pp
        .chunks_mut(chunk)
        .zip(gp.chunks(chunk))
        .zip(mp.chunks_mut(chunk))
        .zip(vp.chunks_mut(chunk));
    parallel::for_each(parts.collect(), |(((p, g), m), v)| {
        adam_chunk(p, g, m, v, k)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SIMD level's kernel makes torch's update (the torch-op version,
    /// which runs oneDNN/ATen's own vectorised code) to within float32
    /// rounding, including lengths that leave a remainder after the vector
    /// loop. A level this CPU lacks is reported and skipped: CI machines
    /// differ, and the AVX-512 kernel is checked on those that have it.
    #[test]
    fn every_simd_level_matches_torch() {
        let _torch = pipe_runtime::runtime::torch_global_lock();
        tch::manual_seed(7);
        let c = AdamConfig {
            lr: 3e-3,
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        for level in [SimdLevel::Scalar, SimdLevel::Avx2Fma, SimdLevel::Avx512] {
            if !level.supported() {
                eprintln!("skipped: this CPU has no {}", level.name());
                continue;
            }
            for n in [1usize, 7, 16, 37, 1000] {
                let p0 = Tensor::randn([n as i64], (Kind::Float, Device::Cpu));
                let (expected, em, ev) = (p0.copy(), p0.zeros_like(), p0.zeros_like());
                let (mut p, mut m, mut v) = (
                    Vec::<f32>::try_from(&p0).unwrap(),
                    vec![0f32; n],
                    vec![0f32; n],
                );
                for step in 1..=5 {
                    let grad = Tensor::randn([n as i64], (Kind::Float, Device::Cpu));
                    let (bias1, bias2) = (1.0 - c.beta1.powi(step), 1.0 - c.beta2.powi(step));
                    tch::no_grad(|| {
                        tensor_step(
                            &expected,
                            &grad,
                            &em,
                            &ev,
                            c,
                            ScalarsFrom::Host { bias1, bias2 },
                        )
                    });
                    let g = Vec::<f32>::try_from(&grad).unwrap();
                    adam_chunk_at(
                        level,
                        &mut p,
                        &g,
                        &mut m,
                        &mut v,
                        StepScalars::new(c, bias1, bias2),
                    );
                }
                let got = Tensor::from_slice(&p);
                assert!(
                    got.allclose(&expected, 1e-5, 1e-6, false),
                    "{} kernel, {n} elements",
                    level.name()
                );
                assert!(
                    Tensor::from_slice(&v).allclose(&ev, 1e-5, 1e-9, false),
                    "{} kernel's second moment",
                    level.name()
                );
            }
        }
    }

    /// The fused CPU loop and the torch-op version (used off the CPU) make the
    /// same lazy updates.
    #[test]
    fn fused_sparse_step_matches_the_tensor_version() {
        let _torch = pipe_runtime::runtime::torch_global_lock();
        tch::manual_seed(4);
        let c = AdamConfig {
            lr: 1e-2,
            ..AdamConfig::default()
        };
        let table = Tensor::randn([30, 5], (Kind::Float, Device::Cpu));
        let (p1, m1, v1) = (table.copy(), table.zeros_like(), table.zeros_like());
        let (p2, m2, v2) = (table.copy(), table.zeros_like(), table.zeros_like());
        for step in 1..=10 {
            let weight = table.copy().set_requires_grad(true);
            let ids = Tensor::randint(8, [4, 7], (Kind::Int64, Device::Cpu));
            let loss = (Tensor::embedding(&weight, &ids, 0, false, true)
                * Tensor::randn([4, 7, 5], (Kind::Float, Device::Cpu)))
            .sum(Kind::Float);
            let grad = Tensor::run_backward(&[loss], &[&weight], false, false).remove(0);
            assert!(grad.is_sparse());
            let (bias1, bias2) = (1.0 - c.beta1.powi(step), 1.0 - c.beta2.powi(step));
            tch::no_grad(|| {
                fused_sparse_cpu_step(&p1, &grad, &m1, &v1, c, bias1, bias2);
                sparse_step(&p2, &grad, &m2, &v2, c, bias1, bias2);
            });
        }
        assert!(p1.allclose(&p2, 1e-6, 1e-7, false));
        assert!(v1.allclose(&v2, 1e-6, 1e-9, false));
        assert!(!p1.equal(&table), "the used rows moved");
    }
}
