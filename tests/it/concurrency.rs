//! Two threads trace one shared model at the same time; each sees only its own interventions.

use crate::support;

use nnsight::prelude::*;
use support::models::Transformer;
use support::{B, assert_identical, input};

#[test]
fn concurrent_traces_over_one_model_do_not_interfere() {
    let model = Transformer::<B>::new(2, &Default::default());
    let model = &model;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|worker| {
                scope.spawn(move || {
                    for round in 0..25u64 {
                        let x = input([1, 3, 8], 100 + worker * 1000 + round);
                        let patch = input([1, 3, 8], 200 + worker * 1000 + round);
                        let (h0, out) = model
                            .trace(x.clone())
                            .run(async |m| {
                                let h0 = m.blocks[0].output().await?;
                                // Worker 0 patches block 1, worker 1 only reads.
                                if worker == 0 {
                                    m.blocks[1].output().replace(patch.clone()).await?;
                                }
                                Ok((h0, m.output().await?))
                            })
                            .unwrap();
                        assert_identical(&h0, &model.blocks[0].forward(x.clone()));
                        let expected = if worker == 0 { model.tail(patch) } else { model.forward(x) };
                        assert_identical(&out, &expected);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker thread");
        }
    });
}

#[test]
fn analyses_on_one_shared_language_model_from_two_threads_match_one_thread() {
    // The toolkit's lens and patching, run at once from two threads over one GPT-2, give what one
    // thread gives, bit for bit.
    use nnsight_toolkit::lens::LogitLens;
    use nnsight_toolkit::patching::{Metric, Patching, SiteKind};
    let lm = support::fixture::tiny_gpt2();
    let (clean, corrupted) = ("The Eiffel Tower is in the city of", "The Colosseum is in the city of");
    let run = || {
        let lens = LogitLens::new(3).track(&[5]).run(&lm, clean).unwrap();
        let mut corrupted = lm.encode(corrupted).unwrap();
        corrupted.resize(lm.encode(clean).unwrap().len(), 0);
        let patched = Patching::new(Metric::logit_diff(5, 9))
            .sites(&[SiteKind::MlpOut, SiteKind::Head(1)])
            .run(&lm, clean, corrupted)
            .unwrap();
        (lens, patched)
    };
    let alone = run();
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            (0..2).map(|_| scope.spawn(|| (0..3).map(|_| run()).collect::<Vec<_>>())).collect();
        for worker in workers {
            for result in worker.join().expect("worker thread") {
                assert_eq!(result.0, alone.0);
                assert_eq!(result.1, alone.1);
            }
        }
    });
}
