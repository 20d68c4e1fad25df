//! BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH (Linux ≥ 5.6), which aya 0.14 does not
//! wrap. One syscall writes thousands of entries: programming 10k Services is ~230k
//! map entries, and one syscall per entry costs more than the whole budget.
//!
//! Ordering is preserved: the kernel applies a batch element by element, in order.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{Pod, maps::MapData};

/// Elements per syscall: bounds the kernel's temporary copy and our latency per call.
const CHUNK: usize = 4096;

// From include/uapi/linux/bpf.h.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn sys_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid bpf_attr prefix; the kernel reads `count` keys/values from
    // the pointers we pass, which point to live slices of at least that length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One BPF_MAP_UPDATE_BATCH of `count` keys and values laid out back to back.
fn update_chunk(fd: u32, keys: *const u8, values: *const u8, count: usize) -> io::Result<()> {
    let mut attr = BatchAttr {
        keys: keys as u64,
        values: values as u64,
        count: count as u32,
        map_fd: fd,
        ..Default::default()
    };
    sys_batch(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    if attr.count as usize != count {
        return Err(io::Error::other(format!(
            "batch update wrote {} of {count}",
            attr.count
        )));
    }
    Ok(())
}

/// Set `keys` of a per-CPU map to zero on every CPU (`value_size` per CPU).
pub fn zero_percpu(map: &MapData, keys: &[u32], value_size: usize, cpus: usize) -> io::Result<()> {
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    // The kernel rounds per-CPU values up to 8 bytes each.
    let per_key = value_size.next_multiple_of(8) * cpus;
    for chunk in keys.chunks(CHUNK) {
        let values = vec![0u8; per_key * chunk.len()];
        update_chunk(fd, chunk.as_ptr().cast(), values.as_ptr(), chunk.len())?;
    }
    Ok(())
}

/// Write `entries` in order. `V` must have the map's value size.
pub fn update<K: Pod, V: Pod>(map: &MapData, entries: &[(K, V)]) -> io::Result<()> {
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    for chunk in entries.chunks(CHUNK) {
        let keys: Vec<K> = chunk.iter().map(|(k, _)| *k).collect();
        let values: Vec<V> = chunk.iter().map(|(_, v)| *v).collect();
        update_chunk(fd, keys.as_ptr().cast(), values.as_ptr().cast(), keys.len())?;
    }
    Ok(())
}

/// Delete `keys`. Keys that are already gone make the kernel stop with ENOENT at that
/// element; the rest of the chunk is then deleted one by one, ignoring ENOENT.
pub fn delete<K: Pod>(map: &MapData, keys: &[K]) -> io::Result<()> {
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    for chunk in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd,
            ..Default::default()
        };
        match sys_batch(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let done = attr.count as usize;
                for k in &chunk[done.min(chunk.len())..] {
                    delete_one(fd, k)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn delete_one<K: Pod>(fd: u32, key: &K) -> io::Result<()> {
    // BPF_MAP_DELETE_ELEM = 3; attr: map_fd u32, pad, key u64.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut attr = ElemAttr {
        map_fd: fd,
        _pad: 0,
        key: key as *const K as u64,
        value: 0,
        flags: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_MAP_DELETE_ELEM; key is live.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            3 as libc::c_long,
            &mut attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}
