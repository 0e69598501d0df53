//! When a worker sends: back to back (closed loop), or on a fixed schedule (`--rate`).
//!
//! With `--rate R` and `--concurrency C`, worker `w` sends request `k` at the intended time
//! `start + (w / C + k) * C / R`: each worker paces to `R / C` requests per second and the
//! workers are staggered evenly, so together they send `R` per second at even spacing. A worker
//! that falls behind (its previous request took longer than the interval) sends at once, without
//! skipping, and the latency of each request is counted from its *intended* time, not from when
//! it was actually sent: the time a request waited behind a slow one is part of what a client
//! at that rate would see (no coordinated omission, as in wrk2). Intended sends that are still
//! unsent when the run ends are reported as `unsent`.
//!
//! Pure: offsets from the start of the run in, offsets out.

use std::time::Duration;

/// The schedule of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Send the next request as soon as the previous answer is in; latency from the actual send.
    ClosedLoop,
    /// Send request `k` at `offset + k * interval` after the start.
    Rate { interval: Duration, offset: Duration },
}

impl Pacing {
    /// The pacing of worker `worker` of `concurrency` for a total of `rate` requests per second
    /// (`None`: closed loop).
    pub fn new(rate: Option<f64>, concurrency: usize, worker: usize) -> Pacing {
        match rate {
            None => Pacing::ClosedLoop,
            Some(rate) => {
                let interval = Duration::from_secs_f64(concurrency as f64 / rate);
                let offset = interval.mul_f64(worker as f64 / concurrency as f64);
                Pacing::Rate { interval, offset }
            }
        }
    }

    /// The intended send time of request `k` (from 0), after the start of the run; `None` in a
    /// closed loop (whenever the previous answer arrives).
    pub fn intended(&self, k: u64) -> Option<Duration> {
        match *self {
            Pacing::ClosedLoop => None,
            Pacing::Rate { interval, offset } => Some(offset + interval.mul_f64(k as f64)),
        }
    }

    /// How many intended sends fall before `elapsed` (0 in a closed loop).
    pub fn due_before(&self, elapsed: Duration) -> u64 {
        match *self {
            Pacing::ClosedLoop => 0,
            Pacing::Rate { interval, offset } => {
                if elapsed <= offset {
                    0
                } else {
                    // ceil((elapsed - offset) / interval): sends at offset, offset + interval, ..
                    let span = (elapsed - offset).as_nanos();
                    let step = interval.as_nanos().max(1);
                    span.div_ceil(step) as u64
                }
            }
        }
    }
}

/// The latency a request is charged: from its intended send time (paced) or its actual send
/// time (closed loop) to the complete answer.
pub fn charged_latency(intended: Option<Duration>, sent: Duration, completed: Duration) -> Duration {
    completed.saturating_sub(intended.unwrap_or(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_has_no_schedule() {
        let pacing = Pacing::new(None, 8, 3);
        assert_eq!(pacing, Pacing::ClosedLoop);
        assert_eq!(pacing.intended(10), None);
        assert_eq!(pacing.due_before(Duration::from_secs(5)), 0);
    }

    #[test]
    fn workers_are_staggered_and_sum_to_the_rate() {
        // 1000/s over 4 workers: each every 4 ms, offsets 0, 1, 2, 3 ms.
        let schedules: Vec<Pacing> = (0..4).map(|w| Pacing::new(Some(1000.0), 4, w)).collect();
        for (w, pacing) in schedules.iter().enumerate() {
            assert_eq!(
                *pacing,
                Pacing::Rate {
                    interval: Duration::from_millis(4),
                    offset: Duration::from_millis(w as u64)
                }
            );
            assert_eq!(pacing.intended(0), Some(Duration::from_millis(w as u64)));
            assert_eq!(pacing.intended(5), Some(Duration::from_millis(20 + w as u64)));
        }
        // Merged, the intended times are exactly 1 ms apart.
        let mut all: Vec<Duration> = schedules
            .iter()
            .flat_map(|p| (0..250).map(|k| p.intended(k).unwrap()))
            .collect();
        all.sort();
        assert!(all.windows(2).all(|w| w[1] - w[0] == Duration::from_millis(1)));
        // 1 s holds 1000 intended sends in total.
        let due: u64 = schedules
            .iter()
            .map(|p| p.due_before(Duration::from_secs(1)))
            .sum();
        assert_eq!(due, 1000);
    }

    #[test]
    fn due_before_counts_sends_strictly_before() {
        let pacing = Pacing::Rate {
            interval: Duration::from_millis(10),
            offset: Duration::from_millis(5),
        };
        assert_eq!(pacing.due_before(Duration::ZERO), 0);
        assert_eq!(pacing.due_before(Duration::from_millis(5)), 0);
        assert_eq!(pacing.due_before(Duration::from_millis(6)), 1);
        assert_eq!(pacing.due_before(Duration::from_millis(15)), 1);
        assert_eq!(pacing.due_before(Duration::from_millis(16)), 2);
    }

    #[test]
    fn a_late_request_is_charged_from_its_intended_time() {
        let ms = Duration::from_millis;
        // On time: sent at 100 ms as intended, answered at 103 ms.
        assert_eq!(charged_latency(Some(ms(100)), ms(100), ms(103)), ms(3));
        // Behind: intended at 100 ms, sent only at 150 ms (the previous answer was slow).
        assert_eq!(charged_latency(Some(ms(100)), ms(150), ms(153)), ms(53));
        // Closed loop: from the actual send.
        assert_eq!(charged_latency(None, ms(150), ms(153)), ms(3));
    }
}
