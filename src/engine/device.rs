//! Where models run: the device an operator names and how an empty choice is
//! resolved.

use std::fmt;

/// Where models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal,
}

impl DeviceSpec {
    /// Parse `MODEL_DEVICE`. Empty means automatic: CUDA when this build has it, else CPU.
    pub fn parse(value: &str) -> Result<Self, String> {
        match Self::parse_named(value)? {
            Some(spec) => Ok(spec),
            None => Ok(Self::auto()),
        }
    }

    /// Parse a device name without resolving an automatic choice: `None` for empty
    /// or `auto` (see [`DeviceSpec::auto`]), an error for a device this build lacks.
    pub fn parse_named(value: &str) -> Result<Option<Self>, String> {
        let v = value.trim().to_ascii_lowercase();
        let spec = match v.as_str() {
            "" | "auto" => return Ok(None),
            "cpu" => Self::Cpu,
            "cuda" | "gpu" => Self::Cuda(0),
            "metal" | "mps" => Self::Metal,
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Self::Cuda(n),
                _ => return Err("expected cpu, cuda, cuda:N, metal or empty for automatic".into()),
            },
        };
        match spec {
            Self::Cpu => Ok(Some(spec)),
            // Refusing here beats reporting a device the models are not really on.
            #[cfg(feature = "cuda")]
            Self::Cuda(_) => Ok(Some(spec)),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda(_) => {
                Err("this build has no CUDA support (build with --features cuda); use cpu".into())
            }
            Self::Metal => Err("this build has no Metal support; use cpu".into()),
        }
    }

    /// CUDA device 0 when this build has CUDA and a GPU answers, else the CPU.
    pub fn auto() -> Self {
        #[cfg(feature = "cuda")]
        if candle_core::utils::cuda_is_available() && candle_core::Device::new_cuda(0).is_ok() {
            return Self::Cuda(0);
        }
        Self::Cpu
    }

    /// True when models live in device memory rather than RAM.
    pub fn is_accelerator(self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(0) => f.write_str("cuda"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        assert_eq!(DeviceSpec::parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse_named(" CPU "), Ok(Some(DeviceSpec::Cpu)));
        assert_eq!(DeviceSpec::parse_named(""), Ok(None));
        assert_eq!(DeviceSpec::parse_named("auto"), Ok(None));
        assert!(DeviceSpec::parse("tpu").is_err());
        assert_eq!(DeviceSpec::Cuda(0).to_string(), "cuda");
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }
}
