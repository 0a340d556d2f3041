//! 1,000 consecutive traces — reads, replacements, and an error every tenth — leave no growth in
//! live heap memory (nnsight's most reported bug is memory growth across traces); so do 1,000
//! batched traces with invokes, shared values, a cache, a persistent edit and stops.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight::{CacheOptions, Edited, Shared};
use support::models::Transformer;
use support::{B, input};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn one_trace(model: &Transformer<B>, x: &Tensor<B, 3>, i: usize) {
    let result = model.trace(x.clone()).run(async |m| {
        let h = m.blocks[0].output().await?;
        let pattern: Tensor<B, 3> = m.blocks[1].attn.pattern.output().await?;
        m.blocks[1].output().replace(h.clone() * 0.5).await?;
        if i.is_multiple_of(10) {
            // An out-of-order access: the trace fails.
            m.blocks[0].output().await?;
        }
        Ok((pattern, m.output().await?))
    });
    assert_eq!(result.is_err(), i.is_multiple_of(10));
}

/// Two invokes sharing a value, a cache, a persistent edit; a stop every seventh trace and an
/// error every tenth.
fn one_batched_trace(edited: &Edited<'_, Transformer<B>>, x: &Tensor<B, 3>, i: usize) {
    let shared = Shared::new("block 0 output");
    let result = edited
        .tracer()
        .invoke(x.clone(), async |m| {
            let cache = m.cache(CacheOptions::only(["blocks.1"]))?;
            shared.set(m.blocks[0].output().await?)?;
            if i.is_multiple_of(7) {
                m.stop()?;
            }
            Ok(cache)
        })
        .invoke(x.clone(), async |m| {
            m.blocks[0].output().replace_with(|| shared.get()).await?;
            let out = m.output().await?;
            if i.is_multiple_of(10) {
                // An out-of-order access: the trace fails.
                m.blocks[0].output().await?;
            }
            Ok(out)
        })
        .run();
    assert_eq!(result.is_err(), i.is_multiple_of(7) || i.is_multiple_of(10), "trace {i}");
}

#[test]
fn a_thousand_traces_leave_no_growth() {
    let model = Transformer::<B>::new(2, &Default::default());
    let edited = model.edit(async |m| m.blocks[1].output().edit(|h| h * 2.0).await);
    let x = input([1, 4, 8], 40);
    // Warm up: the backend's pools and caches settle.
    for i in 0..100 {
        one_trace(&model, &x, i);
        one_batched_trace(&edited, &x, i);
    }
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..1000 {
        one_trace(&model, &x, i);
        one_batched_trace(&edited, &x, i);
    }
    let growth = LIVE.load(Ordering::Relaxed) - before;
    println!("live heap growth over 1,000 + 1,000 traces: {growth} bytes");
    // Any per-trace leak (a tree, an envoy, a tensor) is hundreds of bytes: 1,000 of them would
    // be far above this bound.
    assert!(growth < 16 * 1024, "live heap grew by {growth} bytes over 1,000 traces");
}
