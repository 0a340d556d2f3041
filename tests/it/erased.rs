//! Untyped access: bodies on the root `DynEnvoy` that reach modules by path and read or write
//! sites through `ErasedValue` (what the IR's interpreter does) give bit for bit what typed
//! bodies give, narrow to their invoke's rows, and fail with typed errors on bad paths and bad
//! replacements, leaving the model usable.

use crate::support;

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight::site::{ErasedValue, Kind};
use nnsight::{DynEnvoy, Error};
use support::models::Transformer;
use support::{B, assert_identical, input};

type T3 = Tensor<B, 3>;
type MakeValue = dyn Fn() -> Box<dyn ErasedValue>;

/// Reads a site of `root` at `path` as a `[.., .., ..]` float tensor (element `element` of the
/// arguments for an input site).
async fn read(root: DynEnvoy<'_>, path: &str, kind: Kind, element: Option<usize>) -> nnsight::Result<T3> {
    root.module(path)?
        .erased(kind, 0)
        .visit(false, move |value: &mut dyn ErasedValue, _| {
            let value = match element {
                Some(i) => value.element_mut(i).expect("an argument"),
                None => value,
            };
            Ok(value.as_any().downcast_ref::<T3>().expect("a rank-3 float tensor").clone())
        })
        .await
}

#[test]
fn erased_reads_equal_typed_reads() {
    let model = Transformer::<B>::new(3, &Default::default());
    let x = input([1, 4, 8], 1);
    let typed = model
        .trace(x.clone())
        .run(async |m| Ok((m.blocks[1].output().await?, m.blocks[2].attn.input().await?, m.output().await?)))
        .unwrap();
    let erased = model
        .tracer()
        .invoke_inputs_dyn([(Some((x,)), async |root: DynEnvoy<'_>| {
            Ok((
                read(root, "blocks.1", Kind::Output, None).await?,
                read(root, "blocks.2.attn", Kind::Input, Some(0)).await?,
                read(root, "", Kind::Output, None).await?,
            ))
        })])
        .run()
        .unwrap()
        .0
        .remove(0);
    assert_identical(&typed.0, &erased.0);
    assert_identical(&typed.1, &erased.1);
    assert_identical(&typed.2, &erased.2);
}

#[test]
fn erased_writes_equal_typed_replacements_and_stay_in_their_rows() {
    let model = Transformer::<B>::new(3, &Default::default());
    let (a, b) = (input([1, 4, 8], 2), input([2, 4, 8], 3));
    let typed = model
        .tracer()
        .invoke(a.clone(), async |m| m.output().await)
        .invoke(b.clone(), async |m| {
            m.blocks[1].output().edit(|h| h * 2.0).await?;
            m.output().await
        })
        .run()
        .unwrap();
    let doubled = async |root: DynEnvoy<'_>| {
        root.module("blocks.1")?
            .erased(Kind::Output, 0)
            .visit(true, |value: &mut dyn ErasedValue, writer| {
                let h = value.as_any().downcast_ref::<T3>().unwrap().clone();
                assert_eq!(h.dims(), [2, 4, 8], "invoke 1 sees its two rows");
                writer.assign(value, Box::new(h * 2.0))
            })
            .await?;
        read(root, "", Kind::Output, None).await
    };
    let plain = async |root: DynEnvoy<'_>| read(root, "", Kind::Output, None).await;
    let (outputs_a, outputs_b) = model
        .tracer()
        .invoke_inputs_dyn([(Some((a,)), plain)])
        .invoke_inputs_dyn([(Some((b,)), doubled)])
        .run()
        .unwrap();
    assert_identical(&typed.0, &outputs_a[0]);
    assert_identical(&typed.1, &outputs_b[0]);
}

#[test]
fn unknown_paths_and_bad_replacements_are_typed_errors_and_the_model_stays_usable() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 4, 8], 4);
    let before = model.forward(x.clone());
    let cases = [
        ("blocks.7", "`blocks` has no `7`"),
        ("blocks.0.mpl", "(it has: ln_1, attn, ln_2, mlp)"),
        ("blocks", "a list"),
    ];
    for (path, message) in cases {
        let error = model
            .tracer()
            .invoke_inputs_dyn([(Some((x.clone(),)), async |root: DynEnvoy<'_>| {
                root.module(path).map(|_| ())
            })])
            .run()
            .unwrap_err();
        assert!(
            matches!(error, Error::UnknownModule { .. }) && error.to_string().contains(message),
            "{path}: {error}"
        );
    }
    let wider = || -> Box<dyn ErasedValue> { Box::new(input([1, 4, 9], 5)) };
    let flat = || -> Box<dyn ErasedValue> { Box::new(input([1, 4], 5)) };
    let replacements: [(&MakeValue, &str); 2] = [(&wider, "shape mismatch"), (&flat, "type mismatch")];
    for (replacement, message) in replacements {
        let error = model
            .tracer()
            .invoke_inputs_dyn([(Some((x.clone(),)), async |root: DynEnvoy<'_>| {
                root.module("blocks.0")?
                    .erased(Kind::Output, 0)
                    .visit(true, |value: &mut dyn ErasedValue, writer| writer.assign(value, replacement()))
                    .await
            })])
            .run()
            .unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
    }
    assert_identical(&model.forward(x), &before);
}
