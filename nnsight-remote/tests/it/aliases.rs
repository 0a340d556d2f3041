//! TransformerLens' hook names in programs: resolved through the family's vocabulary before a
//! program runs (as a host resolves them at ingress), they run byte for byte as the module paths
//! they stand for, on GPT-2 and Llama; a name the family cannot resolve is a diagnostic.

use std::collections::BTreeMap;

use burn::backend::Flex;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::vocabulary::Standardized;
use nnsight_remote::Code;
use nnsight_remote::interpret::{Hosted, RunError, run_language_model};
use nnsight_remote::ir::{BinaryFn, Input, Invoke, Op, Program, Site, SiteKind, Trace};

use crate::corpus::{Nodes, output};

type B = Flex;

fn load<M: nnsight_models::Pretrained<B>>(fixture: &str) -> LanguageModel<B, M> {
    let dir = nnsight_support::fixture_dir(fixture);
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap()
}

/// Reads `sites` (each saved as `s{i}`), doubles the first and writes it back, saves the logits.
fn program(sites: &[Site]) -> Program {
    let mut n = Nodes::default();
    let mut first = None;
    for (i, site) in sites.iter().enumerate() {
        let value = n.push(Op::Read { site: site.clone() });
        n.push(Op::Save { name: format!("s{i}"), value, cast: None });
        first.get_or_insert(value);
    }
    let doubled = n.push(Op::Binary { fun: BinaryFn::Add, lhs: first.unwrap(), rhs: first.unwrap() });
    n.push(Op::Write { site: sites[sites.len() - 1].clone(), value: doubled });
    let logits = n.push(Op::Read { site: output("") });
    n.push(Op::Save { name: "logits".into(), value: logits, cast: None });
    let input = Some(Input::Text("The Eiffel Tower is in the city of".into()));
    Program::new(vec![Trace { invokes: vec![Invoke { input, nodes: n.0 }], generate: None }])
}

fn input(path: &str) -> Site {
    Site { path: path.into(), kind: SiteKind::Input(0), occurrence: 0 }
}

fn saves<M: nnsight_models::generation::Decoder<B> + Standardized<B>>(
    lm: &LanguageModel<B, M>,
    program: &Program,
) -> Result<Vec<(String, Vec<u8>)>, RunError> {
    let outcome = run_language_model(lm, program, &BTreeMap::new(), &Hosted::new())?;
    Ok(outcome.saves.iter().map(|(name, value)| (name.clone(), value.to_bytes().2)).collect())
}

/// The hook names give the bytes their module paths give.
fn check<M: nnsight_models::generation::Decoder<B> + Standardized<B>>(lm: &LanguageModel<B, M>) {
    let words = lm.model().vocabulary();
    let hooks = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out"];
    let by_name: Vec<Site> = hooks.iter().map(|h| output(h)).collect();
    let by_path: Vec<Site> = hooks
        .iter()
        .map(|h| {
            let location = words.alias(h).unwrap();
            match location.port {
                nnsight_models::vocabulary::Port::Input => input(&location.path),
                nnsight_models::vocabulary::Port::Output => output(&location.path),
            }
        })
        .collect();
    assert_ne!(by_name, by_path);
    assert_eq!(saves(lm, &program(&by_name)).unwrap(), saves(lm, &program(&by_path)).unwrap());

    // Resolving by hand gives the program of module paths; a program of paths is left as it is.
    let mut resolved = program(&by_name);
    nnsight_remote::aliases::resolve(&mut resolved, &words).unwrap();
    assert_eq!(resolved, program(&by_path));
    let mut unchanged = program(&by_path);
    nnsight_remote::aliases::resolve(&mut unchanged, &words).unwrap();
    assert_eq!(unchanged, program(&by_path));
}

#[test]
fn hook_names_run_as_the_module_paths_they_stand_for() {
    check(&load::<Gpt2LMHeadModel<B>>("tiny-gpt2"));
    check(&load::<LlamaForCausalLM<B>>("tiny-llama"));
}

#[test]
fn hook_names_a_family_cannot_resolve_are_diagnostics() {
    let lm = load::<LlamaForCausalLM<B>>("tiny-llama");
    let unknown = |sites: &[Site], part: &str| {
        let Err(RunError::Invalid(diagnostics)) = saves(&lm, &program(sites)) else {
            panic!("{sites:?} ran");
        };
        assert_eq!(diagnostics[0].code, Code::UnknownSite, "{diagnostics:?}");
        assert!(diagnostics[0].message.contains(part), "{diagnostics:?} does not say {part}");
    };
    unknown(&[output("blocks.2.hook_resid_post")], "layer 2 of a 2-layer Llama");
    unknown(&[output("blocks.0.hook_q")], "not a TransformerLens hook");
    unknown(&[output("blocks.x.hook_resid_pre")], "not a layer index");
    unknown(&[input("blocks.0.hook_resid_post")], "use it as a site's output");
    // A skip names a module, not the input of one.
    let mut n = Nodes::default();
    let value = n.push(Op::Read { site: output("blocks.0.hook_resid_post") });
    n.push(Op::Skip { module: "blocks.1.hook_resid_pre".into(), occurrence: 0, value });
    let input = Some(Input::Text("The Eiffel Tower".into()));
    let skip = Program::new(vec![Trace { invokes: vec![Invoke { input, nodes: n.0 }], generate: None }]);
    let Err(RunError::Invalid(diagnostics)) = saves(&lm, &skip) else { panic!("the skip ran") };
    assert!(diagnostics[0].message.contains("not a module to skip"), "{diagnostics:?}");
}
