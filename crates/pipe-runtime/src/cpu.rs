//! What this CPU offers the code `pipe` runs beside torch: the widest SIMD
//! level its hand-written kernels may use, and how many physical cores its
//! thread pool should fill. Both are decided at run time, never at build
//! time, so one binary is right on an AVX-512 server, an AVX2 laptop and an
//! ARM machine.
//!
//! `ONEDNN_MAX_CPU_ISA` caps what oneDNN (torch's CPU kernels) may use; the
//! SIMD level honours the same cap, so `ONEDNN_MAX_CPU_ISA=AVX2` reproduces
//! an AVX2 CPU everywhere at once.

use std::sync::OnceLock;

/// The kernels' instruction-set level, widest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable code (what the compiler's baseline target allows).
    Scalar,
    /// x86-64 AVX2 with FMA: 8 floats per instruction, fused multiply-adds.
    Avx2Fma,
    /// x86-64 AVX-512F: 16 floats per instruction.
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU can run kernels compiled for the level.
    pub fn supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2Fma => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The level the kernels use here: the widest this CPU supports, no wider
/// than `ONEDNN_MAX_CPU_ISA` allows. Read once.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let widest = [SimdLevel::Avx512, SimdLevel::Avx2Fma]
            .into_iter()
            .find(|l| l.supported())
            .unwrap_or(SimdLevel::Scalar);
        widest.min(onednn_isa_cap().map_or(SimdLevel::Avx512, |cap| cap.simd))
    })
}

/// Whether this CPU computes bfloat16 natively: x86 with AVX-512 BF16
/// (CPUs with AMX have it too). Whether oneDNN may use it is the ISA cap's
/// say ([`IsaCap::avx512_bf16`]).
pub fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `ONEDNN_MAX_CPU_ISA`, if set and not blank.
pub fn onednn_max_cpu_isa() -> Option<String> {
    std::env::var("ONEDNN_MAX_CPU_ISA")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `ONEDNN_MAX_CPU_ISA` parsed, if set to a name oneDNN knows.
pub fn onednn_isa_cap() -> Option<IsaCap> {
    onednn_max_cpu_isa().as_deref().and_then(IsaCap::parse)
}

/// What a oneDNN ISA cap allows: the one place its names are read, for
/// our kernels' SIMD level and for oneDNN's bfloat16 kernels alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaCap {
    /// The widest level our kernels may use under it.
    pub simd: SimdLevel,
    /// Whether oneDNN may run its AVX-512 BF16 kernels under it.
    pub avx512_bf16: bool,
}

/// Caps at or above AVX-512 BF16: any other named cap keeps oneDNN off its
/// bfloat16 kernels.
const ISA_CAPS_WITH_BF16: &[&str] = &[
    "ALL",
    "DEFAULT",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
];

impl IsaCap {
    /// Reads a cap name (case-insensitive); `None` for a name oneDNN does
    /// not know (it ignores those, and so do we).
    pub fn parse(cap: &str) -> Option<IsaCap> {
        let cap = cap.trim().to_ascii_uppercase();
        let simd = match cap.as_str() {
            "ALL" | "DEFAULT" => SimdLevel::Avx512,
            // AVX without FMA is no better than what the scalar kernel compiles to.
            "SSE41" | "AVX" => SimdLevel::Scalar,
            c if c.starts_with("AVX2") => SimdLevel::Avx2Fma,
            c if c.starts_with("AVX512") || c.starts_with("AVX10") => SimdLevel::Avx512,
            _ => return None,
        };
        Some(IsaCap {
            simd,
            avx512_bf16: ISA_CAPS_WITH_BF16.contains(&cap.as_str()),
        })
    }
}

/// How many threads torch's pool gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadDecision {
    pub threads: usize,
    pub reason: String,
}

/// Decides the thread count: `PIPE_THREADS`, then the `--threads` flag,
/// then `OMP_NUM_THREADS` (the user's own cap), then one thread per
/// physical core this process may run on. SMT siblings share one core's
/// vector units, so a second thread on them only adds contention to the
/// matrix products.
pub fn decide_threads(flag: Option<usize>) -> ThreadDecision {
    let from_env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    let decided = |threads, reason: String| ThreadDecision { threads, reason };
    if let Some(n) = from_env("PIPE_THREADS") {
        return decided(n, "PIPE_THREADS".into());
    }
    if let Some(n) = flag.filter(|&n| n > 0) {
        return decided(n, "--threads".into());
    }
    if let Some(n) = from_env("OMP_NUM_THREADS") {
        return decided(n, "OMP_NUM_THREADS".into());
    }
    let logical = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match physical_cores() {
        Some(cores) => decided(
            cores.min(logical).max(1),
            format!("one per physical core ({cores} physical, {logical} logical CPUs available)"),
        ),
        None => decided(
            logical,
            format!("one per available CPU ({logical}; the core topology is unreadable here)"),
        ),
    }
}

/// Physical cores among the CPUs this process may run on (its affinity
/// mask), from Linux's sysfs topology. `None` where that is unreadable.
pub fn physical_cores() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)??;
    count_cores(&allowed, |cpu| {
        let read = |file: &str| -> Option<u32> {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/topology/{file}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some((read("physical_package_id")?, read("core_id")?))
    })
}

/// Distinct (package, core) pairs among `cpus`; `None` if any CPU's
/// topology is unknown.
fn count_cores(cpus: &[usize], topology: impl Fn(usize) -> Option<(u32, u32)>) -> Option<usize> {
    let cores: std::collections::BTreeSet<(u32, u32)> =
        cpus.iter().map(|&c| topology(c)).collect::<Option<_>>()?;
    (!cores.is_empty()).then_some(cores.len())
}

/// A kernel CPU list ("0-3,8,10-11").
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// The CPU's model name, from `/proc/cpuinfo` (for reports).
pub fn model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find_map(|l| {
        l.strip_prefix("model name")
            .and_then(|r| r.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_caps_map_to_the_widest_level_they_allow() {
        let simd = |cap: &str| IsaCap::parse(cap).map(|c| c.simd);
        assert_eq!(simd("AVX2"), Some(SimdLevel::Avx2Fma));
        assert_eq!(simd("avx2_vnni"), Some(SimdLevel::Avx2Fma));
        assert_eq!(simd("AVX512_CORE_BF16"), Some(SimdLevel::Avx512));
        assert_eq!(simd("avx10_1_512_amx"), Some(SimdLevel::Avx512));
        assert_eq!(simd("SSE41"), Some(SimdLevel::Scalar));
        assert_eq!(simd(" all "), Some(SimdLevel::Avx512));
        assert_eq!(IsaCap::parse("bogus"), None);
    }

    #[test]
    fn only_caps_at_or_above_avx512_bf16_allow_onednns_bfloat16_kernels() {
        let bf16 = |cap: &str| IsaCap::parse(cap).map(|c| c.avx512_bf16);
        for cap in [
            "all",
            "DEFAULT",
            "avx512_core_bf16",
            "AVX512_CORE_AMX",
            "avx10_1_512",
        ] {
            assert_eq!(bf16(cap), Some(true), "{cap}");
        }
        for cap in ["AVX2", "avx512_core", "AVX512_CORE_VNNI", "sse41"] {
            assert_eq!(bf16(cap), Some(false), "{cap}");
        }
    }

    #[test]
    fn smt_siblings_count_as_one_core() {
        // 4 logical CPUs: two cores with two hyperthreads each.
        let topology = |cpu: usize| Some((0, (cpu % 2) as u32));
        assert_eq!(count_cores(&[0, 1, 2, 3], topology), Some(2));
        assert_eq!(
            count_cores(&[0, 2], topology),
            Some(1),
            "siblings of one core"
        );
        // Two sockets with a core 0 each are two cores.
        assert_eq!(count_cores(&[0, 1], |cpu| Some((cpu as u32, 0))), Some(2));
        assert_eq!(
            count_cores(&[0, 1], |cpu| (cpu == 0).then_some((0, 0))),
            None
        );
        assert_eq!(count_cores(&[], topology), None);
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn this_machine_has_at_least_one_core_and_a_supported_level() {
        assert!(physical_cores().is_none_or(|n| n >= 1));
        assert!(simd_level().supported());
        assert!(decide_threads(Some(3)).threads >= 1);
    }
}
