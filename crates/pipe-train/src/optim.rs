//! Adam, exactly as `torch.optim.Adam` computes it (bias correction, eps added
//! after the square root, optional L2 weight decay), in one fused pass over
//! parameter, gradient and both moments. On the CPU the pass is split across
//! threads; elsewhere it runs as torch ops on the device.

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
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Adam state for a fixed list of parameters.
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: u64,
    threads: usize,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Adam {
        let exp_avg = params.iter().map(|p| Tensor::zeros_like(p)).collect();
        let exp_avg_sq = params.iter().map(|p| Tensor::zeros_like(p)).collect();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(tch::get_num_threads().max(1) as usize);
        Adam { config, params, exp_avg, exp_avg_sq, step: 0, threads }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for p in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Clips the global gradient norm to `max` (as `clip_grad_norm_`).
    pub fn clip_grad_norm(&self, max: f64) {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().square()).collect();
        let total = Tensor::stack(&norms, 0).sum(Kind::Float).sqrt();
        let scale = (total + 1e-6).reciprocal().g_mul_scalar(max).clamp_max(1.0);
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_(&scale);
            }
        });
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for i in 0..self.params.len() {
                let grad = self.params[i].grad();
                if !grad.defined() {
                    continue;
                }
                let p = &self.params[i];
                let fused = p.device() == Device::Cpu
                    && p.kind() == Kind::Float
                    && grad.kind() == Kind::Float
                    && p.is_contiguous()
                    && grad.is_contiguous();
                if fused {
                    fused_cpu_step(p, &grad, &self.exp_avg[i], &self.exp_avg_sq[i], c, bias1, bias2, self.threads);
                } else {
                    tensor_step(p, &grad, &self.exp_avg[i], &self.exp_avg_sq[i], c, bias1, bias2);
                }
            }
        });
    }
}

/// The same update as torch ops (for GPUs and unusual dtypes).
fn tensor_step(p: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, c: AdamConfig, bias1: f64, bias2: f64) {
    let grad = if c.weight_decay != 0.0 { grad + p * c.weight_decay } else { grad.shallow_clone() };
    let (mut m, mut v, mut p) = (m.shallow_clone(), v.shallow_clone(), p.shallow_clone());
    let _ = m.lerp_(&grad, 1.0 - c.beta1);
    let _ = v.g_mul_scalar_(c.beta2).addcmul_(&grad, &grad.g_mul_scalar(1.0 - c.beta2));
    let denom = (v.sqrt() / bias2.sqrt()) + c.eps;
    let _ = p.addcdiv_(&(m.g_mul_scalar(-c.lr / bias1)), &denom);
}

#[allow(clippy::too_many_arguments)]
fn fused_cpu_step(p: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, c: AdamConfig, bias1: f64, bias2: f64, threads: usize) {
    let n = p.numel();
    // SAFETY: all four tensors are contiguous f32 CPU tensors of `n` elements
    // (m and v were made with zeros_like(p)); nothing else touches them during
    // the step, and each thread gets a disjoint range.
    let (pp, gp, mp, vp) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(grad.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
        )
    };
    // Same arithmetic order as torch's single-tensor Adam, in f32.
    let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
    let (one_minus_b1, one_minus_b2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
    let wd = c.weight_decay as f32;
    let step_size = (c.lr / bias1) as f32;
    let inv_bias2_sqrt = (1.0 / bias2.sqrt()) as f32;
    let eps = c.eps as f32;
    let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        for i in 0..p.len() {
            let g = if wd != 0.0 { g[i] + wd * p[i] } else { g[i] };
            // lerp as torch vectorises it: one fused multiply-add.
            m[i] = (g - m[i]).mul_add(one_minus_b1, m[i]);
            v[i] = (one_minus_b2 * g).mul_add(g, v[i] * b2);
            let denom = v[i].sqrt() * inv_bias2_sqrt + eps;
            p[i] -= step_size * m[i] / denom;
        }
    };
    let _ = b1;
    const MIN_CHUNK: usize = 1 << 15;
    if threads <= 1 || n < 2 * MIN_CHUNK {
        update(pp, gp, mp, vp);
        return;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let parts = pp.chunks_mut(chunk).zip(gp.chunks(chunk)).zip(mp.chunks_mut(chunk)).zip(vp.chunks_mut(chunk));
        for (((p, g), m), v) in parts {
            s.spawn(move || update(p, g, m, v));
        }
    });
}
