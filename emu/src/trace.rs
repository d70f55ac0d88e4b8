//! Reading qemu's execution trace (`-singlestep -d exec,nochain`): one
//! `Trace` line per executed translation block, which with `-singlestep` is
//! one guest instruction, e.g.
//!
//! ```text
//! Trace 0: 0x7f2b39000100 [0000000001009331/0000000000400600/00000001/00000201] _start
//! ```
//!
//! The second field in brackets is the guest program counter.

use std::ops::Range;

use crate::error::EmuError;

/// The guest program counter of a `Trace` line.
pub fn trace_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let inside = &rest[rest.find('[')? + 1..];
    let pc = inside.split('/').nth(1)?;
    u64::from_str_radix(pc.trim_end_matches(']'), 16).ok()
}

/// Splits the trace at each execution of `mark` (one per call operation)
/// and counts, in each segment, the instructions executed inside `ranges`.
pub fn count_per_call(text: &str, mark: u64, ranges: &[Range<u64>]) -> Result<Vec<u64>, EmuError> {
    let mut counts: Vec<u64> = Vec::new();
    let mut before_first = 0u64;
    for line in text.lines() {
        let Some(pc) = trace_pc(line) else {
            continue;
        };
        if pc == mark {
            counts.push(0);
        } else if ranges.iter().any(|r| r.contains(&pc)) {
            match counts.last_mut() {
                Some(c) => *c += 1,
                None => before_first += 1,
            }
        }
    }
    if before_first != 0 {
        return Err(EmuError::Trace(format!(
            "{before_first} traced instructions ran before the first call"
        )));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_7_trace_lines() {
        let l =
            "Trace 0: 0x7f2b39000100 [0000000001009331/0000000000400600/00000001/00000201] _start";
        assert_eq!(trace_pc(l), Some(0x400600));
        assert_eq!(trace_pc("Linking TBs 0x1 [0x2] index 0 -> 0x3"), None);
        let mark = "Trace 0: 0x1 [0/0000000000000010/0/0] ";
        let other = "Trace 0: 0x1 [0/0000000000000020/0/0] ";
        let text = [mark, l, other, l, mark, other].join("\n");
        let text_range = 0x400000..0x401000;
        let ranges = std::slice::from_ref(&text_range);
        assert_eq!(count_per_call(&text, 0x10, ranges).unwrap(), [2, 0]);
        // Traced code before the first call: the trace is not understood.
        assert!(count_per_call(&[l, mark].join("\n"), 0x10, ranges).is_err());
    }
}
