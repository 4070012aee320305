//! Which float type the recurrent layer computes in, decided from the
//! machine when a pipeline says `precision: auto` (the default).
//!
//! bfloat16 halves the LSTM's matrix-product cost only where oneDNN runs it
//! natively: x86 CPUs with AVX-512 BF16 (AMX CPUs have it too). Everywhere
//! else (AVX2-only x86 such as AMD Zen 3 and most desktops, ARM, Apple) it is
//! emulated and about ten times slower than float32, so `auto` picks float32
//! there. `ONEDNN_MAX_CPU_ISA` caps what oneDNN may use; `auto` honours it,
//! so `ONEDNN_MAX_CPU_ISA=AVX2` reproduces an AVX2 CPU's choice on any x86.

use pipe_runtime::cpu::{self, IsaCap};
use serde::{Deserialize, Serialize};

use crate::model::Architecture;

/// The float type the recurrent layer computes in (a resolved
/// [`PrecisionChoice`]). Embedding, pooling, the output layer, the
/// gradients and the optimizer stay float32 either way (mixed precision). On
/// CUDA the layer computes in float32: cuDNN reads its flattened float32
/// weights in place, and at these sizes the GPU is bound by kernel launches,
/// not arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Float32,
    /// bfloat16 inputs and weights into the LSTM/GRU kernel (oneDNN): its
    /// matrix products run at twice float32's rate on CPUs with AVX-512 BF16
    /// or AMX; its outputs come back as float32 for pooling and loss. Without
    /// those instructions bfloat16 is emulated, and slower.
    Bfloat16,
}

impl Precision {
    /// The name a pipeline and a report use: `float32` or `bfloat16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Bfloat16 => "bfloat16",
        }
    }
}

/// What a pipeline asks for, resolved by [`resolve`] into a [`Precision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    /// bfloat16 where it is native and faster, float32 elsewhere.
    #[default]
    Auto,
    Float32,
    /// Allowed on any CPU; where it is emulated the train stage warns.
    Bfloat16,
}

/// A resolved precision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecisionDecision {
    pub precision: Precision,
    pub reason: String,
}

/// What the machine offers, read once: the CPU's bfloat16 support and
/// oneDNN's ISA cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFacts {
    /// x86 with AVX-512 BF16 (or AMX-BF16).
    pub avx512_bf16: bool,
    /// `ONEDNN_MAX_CPU_ISA`, if set.
    pub onednn_max_cpu_isa: Option<String>,
}

impl CpuFacts {
    pub fn of_this_machine() -> CpuFacts {
        CpuFacts {
            avx512_bf16: cpu::has_avx512_bf16(),
            onednn_max_cpu_isa: cpu::onednn_max_cpu_isa(),
        }
    }

    /// Whether oneDNN will run bfloat16 natively here: the CPU has it and
    /// the ISA cap lets oneDNN use it.
    pub fn native_bfloat16(&self) -> bool {
        self.avx512_bf16 && self.isa_cap_allows_bf16()
    }

    /// A cap name oneDNN does not know is ignored, as oneDNN ignores it.
    fn isa_cap_allows_bf16(&self) -> bool {
        self.onednn_max_cpu_isa
            .as_deref()
            .and_then(IsaCap::parse)
            .is_none_or(|cap| cap.avx512_bf16)
    }
}

/// Resolves `choice` for a model of `architecture` on `device` (`cpu`,
/// `cuda:N`) given the machine's `facts`.
pub fn resolve(
    choice: PrecisionChoice,
    architecture: Architecture,
    device: &str,
    facts: &CpuFacts,
) -> PrecisionDecision {
    let decided = |precision, reason: &str| PrecisionDecision {
        precision,
        reason: reason.to_string(),
    };
    match choice {
        PrecisionChoice::Float32 => decided(Precision::Float32, "float32 as configured"),
        PrecisionChoice::Bfloat16 => decided(Precision::Bfloat16, "bfloat16 as configured"),
        PrecisionChoice::Auto if device.starts_with("cuda") => {
            decided(Precision::Float32, "auto: on CUDA cuDNN runs the recurrent layer in float32 (the GPU is bound by launches, not arithmetic)")
        }
        PrecisionChoice::Auto if architecture != Architecture::Lstm => {
            decided(Precision::Float32, "auto: only the LSTM has oneDNN's bfloat16 kernels; this layer would run it emulated")
        }
        PrecisionChoice::Auto if !facts.avx512_bf16 => {
            decided(Precision::Float32, "auto: this CPU has no AVX-512 BF16, so bfloat16 would be emulated (about 10x slower)")
        }
        PrecisionChoice::Auto if !facts.isa_cap_allows_bf16() => PrecisionDecision {
            precision: Precision::Float32,
            reason: format!(
                "auto: ONEDNN_MAX_CPU_ISA={} keeps oneDNN below AVX-512 BF16, so bfloat16 would be emulated",
                facts.onednn_max_cpu_isa.as_deref().unwrap_or_default()
            ),
        },
        PrecisionChoice::Auto => {
            decided(Precision::Bfloat16, "auto: this CPU has AVX-512 BF16, where oneDNN's bfloat16 LSTM runs about twice float32's rate")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(avx512_bf16: bool, cap: Option<&str>) -> CpuFacts {
        CpuFacts {
            avx512_bf16,
            onednn_max_cpu_isa: cap.map(str::to_string),
        }
    }

    #[test]
    fn auto_picks_bfloat16_only_where_onednn_runs_it_natively() {
        let lstm = |f: &CpuFacts, device: &str| {
            resolve(PrecisionChoice::Auto, Architecture::Lstm, device, f).precision
        };
        assert_eq!(lstm(&facts(true, None), "cpu"), Precision::Bfloat16);
        assert_eq!(lstm(&facts(true, Some("all")), "cpu"), Precision::Bfloat16);
        assert_eq!(
            lstm(&facts(true, Some("AVX512_CORE_AMX")), "cpu"),
            Precision::Bfloat16
        );
        // An AVX2 CPU, or an AVX-512 BF16 CPU capped the way a user reproduces one.
        assert_eq!(lstm(&facts(false, None), "cpu"), Precision::Float32);
        assert_eq!(lstm(&facts(true, Some("AVX2")), "cpu"), Precision::Float32);
        assert_eq!(
            lstm(&facts(true, Some("avx512_core")), "cpu"),
            Precision::Float32
        );
        assert_eq!(lstm(&facts(true, None), "cuda:0"), Precision::Float32);
        // A name oneDNN does not know is ignored, by oneDNN and by `auto`.
        assert_eq!(
            lstm(&facts(true, Some("bogus")), "cpu"),
            Precision::Bfloat16
        );
        assert_eq!(
            lstm(&facts(false, Some("bogus")), "cpu"),
            Precision::Float32
        );
        let gru = resolve(
            PrecisionChoice::Auto,
            Architecture::Gru,
            "cpu",
            &facts(true, None),
        );
        assert_eq!(gru.precision, Precision::Float32);
        let capped = resolve(
            PrecisionChoice::Auto,
            Architecture::Lstm,
            "cpu",
            &facts(true, Some("AVX2")),
        );
        assert!(
            capped.reason.contains("ONEDNN_MAX_CPU_ISA=AVX2"),
            "{}",
            capped.reason
        );
    }

    #[test]
    fn an_explicit_choice_is_kept_on_any_machine() {
        for f in [facts(false, None), facts(true, Some("AVX2"))] {
            assert_eq!(
                resolve(PrecisionChoice::Bfloat16, Architecture::Lstm, "cpu", &f).precision,
                Precision::Bfloat16
            );
            assert_eq!(
                resolve(PrecisionChoice::Float32, Architecture::Lstm, "cpu", &f).precision,
                Precision::Float32
            );
        }
    }

    /// The decision on the machine running the tests, under the ISA cap it
    /// runs with: what the CPU flags and `ONEDNN_MAX_CPU_ISA` say.
    #[test]
    fn auto_on_this_machine_follows_its_flags() {
        let here = CpuFacts::of_this_machine();
        let decision = resolve(PrecisionChoice::Auto, Architecture::Lstm, "cpu", &here);
        let expected = if here.native_bfloat16() {
            Precision::Bfloat16
        } else {
            Precision::Float32
        };
        assert_eq!(
            decision.precision, expected,
            "{here:?}: {}",
            decision.reason
        );
        let capped = CpuFacts {
            onednn_max_cpu_isa: Some("AVX2".into()),
            ..here
        };
        assert_eq!(
            resolve(PrecisionChoice::Auto, Architecture::Lstm, "cpu", &capped).precision,
            Precision::Float32
        );
    }
}
