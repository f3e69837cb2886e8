//! AdamW with inspectable state (so checkpoints can save and restore it exactly), global-norm
//! gradient clipping, and the warm-up + cosine learning-rate schedule.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{ModelError, Result};

/// Adam's moment estimates for one parameter.
#[derive(Clone)]
pub struct Moments {
    /// First moment (mean of gradients).
    pub m: Tensor,
    /// Second moment (mean of squared gradients).
    pub v: Tensor,
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    moments: Vec<Moments>,
    step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// A fresh optimiser over named parameters (zero moments, step 0).
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|(_, v)| {
                let z = v.as_tensor().zeros_like()?;
                Ok(Moments { m: z.clone(), v: z })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            vars,
            moments,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Optimiser steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The named moments, in parameter order, for checkpoints.
    pub fn state(&self) -> impl Iterator<Item = (&str, &Moments)> {
        self.vars.iter().map(|(n, _)| n.as_str()).zip(&self.moments)
    }

    /// Restores moments (looked up by parameter name) and the step count.
    pub fn restore(
        &mut self,
        step: u64,
        mut lookup: impl FnMut(&str) -> Option<Moments>,
    ) -> Result<()> {
        for ((name, var), slot) in self.vars.iter().zip(self.moments.iter_mut()) {
            let moments = lookup(name).ok_or_else(|| {
                ModelError::Config(format!("optimiser state for {name} is missing"))
            })?;
            if moments.m.dims() != var.dims() || moments.v.dims() != var.dims() {
                return Err(ModelError::Config(format!(
                    "optimiser state for {name} has the wrong shape"
                )));
            }
            *slot = moments;
        }
        self.step = step;
        Ok(())
    }

    /// Global L2 norm of the gradients present in `grads`.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0.0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(total.sqrt())
    }

    /// One update with learning rate `lr`, gradients first scaled by `grad_scale` (for
    /// clipping). Parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(t);
        let correction2 = 1.0 - b2.powi(t);
        for ((_, var), state) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let grad = grad.detach().affine(grad_scale, 0.0)?;
            let m = ((&state.m * b1)? + (&grad * (1.0 - b1))?)?;
            let v = ((&state.v * b2)? + (grad.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&m / correction1)?;
            let v_hat = (&v / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor().detach() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            *state = Moments { m, v };
        }
        Ok(())
    }
}

/// Linear warm-up to `peak`, then cosine decay to `peak × min_fraction` at `total` steps.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps of the run.
    pub total: u64,
    /// Final learning rate as a fraction of the peak.
    pub min_fraction: f64,
}

impl Schedule {
    /// The learning rate for optimiser step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let floor = self.peak * self.min_fraction;
        floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = Schedule {
            peak: 1.0,
            warmup: 10,
            total: 110,
            min_fraction: 0.1,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
    }

    /// Adam's first step moves each parameter by lr against the gradient's sign.
    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let loss = (var.as_tensor() * Tensor::new(&[3.0f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(vec![("p".into(), var.clone())], 0.0).unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
        assert_eq!(opt.step_count(), 1);
    }
}
