//! Spreading a stage's workers over several devices: each worker takes the listed device that
//! the fewest workers of this process use, and gives it back when it closes, so `workers = 4`
//! with four GPUs listed runs one worker per GPU (and a restarted worker returns to the GPU
//! its predecessor left).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::device::ClipDevice;

/// Workers of this process per device.
fn users() -> &'static Mutex<HashMap<ClipDevice, usize>> {
    static USERS: OnceLock<Mutex<HashMap<ClipDevice, usize>>> = OnceLock::new();
    USERS.get_or_init(Mutex::default)
}

/// One worker's use of a device; dropping it gives the device back.
#[derive(Debug)]
pub(crate) struct DeviceLease {
    device: ClipDevice,
}

impl DeviceLease {
    /// Takes the least used of `devices` (the first of those tied); CPU when the list is empty.
    pub(crate) fn take(devices: &[ClipDevice]) -> Self {
        let mut users = users().lock().unwrap_or_else(PoisonError::into_inner);
        let device = devices
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(i, d)| (users.get(d).copied().unwrap_or(0), *i))
            .map_or(ClipDevice::Cpu, |(_, d)| d);
        *users.entry(device).or_default() += 1;
        Self { device }
    }

    /// The device taken.
    pub(crate) fn device(&self) -> ClipDevice {
        self.device
    }
}

impl Drop for DeviceLease {
    fn drop(&mut self) {
        let mut users = users().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = users.get_mut(&self.device) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_over_the_listed_devices_and_come_back_to_a_freed_one() {
        // Devices no other test uses, so the process-wide counts start at zero.
        let gpus = [ClipDevice::Cuda(90), ClipDevice::Cuda(91), ClipDevice::Cuda(92)];
        let first: Vec<DeviceLease> = (0..3).map(|_| DeviceLease::take(&gpus)).collect();
        assert_eq!(first.iter().map(DeviceLease::device).collect::<Vec<_>>(), gpus);
        let fourth = DeviceLease::take(&gpus);
        assert_eq!(fourth.device(), gpus[0]);
        let mut first = first;
        drop(first.remove(1));
        assert_eq!(DeviceLease::take(&gpus).device(), gpus[1]);
        assert_eq!(DeviceLease::take(&[]).device(), ClipDevice::Cpu);
    }
}
