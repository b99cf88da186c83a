//! The build plan: a parsed Dockerfile cut into stages, each with its base (scratch, an
//! earlier stage or an image reference, global ARGs expanded), the stage `--target` picks,
//! and the stages it needs, in build order (unused stages are pruned, as BuildKit does).

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context as _, Result};

use crate::dockerfile::{closest, expand_word, Args, Dockerfile, Instruction, Keyword};
use crate::registry::Platform;

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    Stage(usize),
    Image(String),
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// line of the FROM
    pub line: usize,
    /// `FROM --platform=…` expanded: the platform this stage's base is pulled for and its
    /// RUNs execute as (None: the build's target platform)
    pub platform: Option<Platform>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// What the orchestrator executes.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub stages: Vec<Stage>,
    /// stage indexes to build, in order
    pub order: Vec<usize>,
    pub target: usize,
    /// ARGs declared before the first FROM, with their values (None: declared, unset)
    pub global_args: HashMap<String, Option<String>>,
    /// --build-arg values
    pub build_args: HashMap<String, String>,
}

impl BuildPlan {
    /// The stage a `--from` value or FROM name refers to, looking only at stages before `before`.
    pub fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        stage_ref(&self.stages[..before.min(self.stages.len())], name)
    }
}

fn stage_ref(stages: &[Stage], name: &str) -> Option<usize> {
    if let Ok(n) = name.parse::<usize>() {
        return (n < stages.len()).then_some(n);
    }
    let lower = name.to_ascii_lowercase();
    stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
}

/// A lookup over global ARG values for FROM and `--from` expansion.
pub fn global_lookup(globals: &HashMap<String, Option<String>>) -> HashMap<String, String> {
    globals
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect()
}

/// ARGs every build has without declaring them (BuildKit's proxy ARGs).
pub use crate::dockerfile::PROXY_ARGS;

/// BuildKit's automatic platform ARGs, in global scope (usable in FROM; a stage declares
/// `ARG TARGETARCH` to see one): `TARGET*` the platform built for, `BUILD*` the machine
/// kiln runs on.
pub fn platform_args(platform: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (side, platform) in [("TARGET", platform), ("BUILD", &Platform::host())] {
        let variant = platform.variant.clone().unwrap_or_default();
        let full = platform.to_string();
        out.push((format!("{side}PLATFORM"), full.clone()));
        out.push((format!("{side}OS"), platform.os.clone()));
        out.push((format!("{side}ARCH"), platform.architecture.clone()));
        out.push((format!("{side}VARIANT"), variant.clone()));
    }
    out
}

/// Cuts a parsed Dockerfile into stages, picks the target and prunes what it does not need.
pub fn plan(
    df: &Dockerfile,
    build_args: &[(String, String)],
    target: Option<&str>,
    platform: &Platform,
) -> Result<BuildPlan> {
    let build_args: HashMap<String, String> = build_args.iter().cloned().collect();
    let mut global_args: HashMap<String, Option<String>> = platform_args(platform)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &df.instructions {
        if ins.keyword == Keyword::From {
            let stage = from_stage(ins, &stages, &global_args, df.escape)?;
            stages.push(stage);
            continue;
        }
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(ins.clone()),
            None if ins.keyword == Keyword::Arg => {
                global_arg(ins, &build_args, &mut global_args, df.escape)?
            }
            None => bail!(
                "Dockerfile:{}: {} before the first FROM (only ARG may come before FROM)",
                ins.line,
                ins.keyword.as_str()
            ),
        }
    }
    if stages.is_empty() {
        bail!("the dockerfile has no FROM instruction");
    }
    let target = match target {
        None => stages.len() - 1,
        Some(t) => stage_ref(&stages, t)
            .filter(|_| t.parse::<usize>().is_err())
            .with_context(|| target_not_found(t, &stages))?,
    };
    let order = needed(&stages, target, &global_lookup(&global_args), df.escape);
    for &i in &order {
        check_from_names(&stages, i, &global_lookup(&global_args), df.escape)?;
    }
    Ok(BuildPlan {
        stages,
        order,
        target,
        global_args,
        build_args,
    })
}

/// The stage a `FROM` starts: its base expanded with the global ARGs, its name checked.
fn from_stage(
    ins: &Instruction,
    stages: &[Stage],
    global_args: &HashMap<String, Option<String>>,
    escape: char,
) -> Result<Stage> {
    let (image, name) = ins.from_parts()?;
    let lookup = global_lookup(global_args);
    let image = expand_word(&image, &lookup, escape)
        .with_context(|| format!("Dockerfile:{}: expanding FROM {image}", ins.line))?;
    if image.is_empty() {
        bail!(
            "Dockerfile:{}: FROM names no image after expansion",
            ins.line
        );
    }
    let platform = match ins.flag("platform") {
        Some(flag) => {
            let value = flag.value.as_deref().unwrap_or_default();
            let expanded = expand_word(value, &lookup, escape).with_context(|| {
                format!("Dockerfile:{}: expanding FROM --platform={value}", ins.line)
            })?;
            Some(
                expanded
                    .parse::<Platform>()
                    .with_context(|| format!("Dockerfile:{}: FROM --platform", ins.line))?,
            )
        }
        None => None,
    };
    let name = name.map(|n| n.to_ascii_lowercase());
    if let Some(n) = &name {
        if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
            bail!("Dockerfile:{}: duplicate stage name {n:?}", ins.line);
        }
    }
    let base = if image.eq_ignore_ascii_case("scratch") {
        Base::Scratch
    } else if let Some(dep) = stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()))
    {
        Base::Stage(dep.index)
    } else if let Some(stage) = stage_typo(&image, stages) {
        bail!(
            "Dockerfile:{}: FROM {image}: no stage {image:?} before this one (did you mean stage \
             {stage:?}?); an image needs a tag or registry ({image}:latest)",
            ins.line
        );
    } else {
        Base::Image(image)
    };
    Ok(Stage {
        index: stages.len(),
        name,
        base,
        line: ins.line,
        platform,
        instructions: Vec::new(),
    })
}

/// `--target` names no stage: which ones there are, and the likely one.
fn target_not_found(target: &str, stages: &[Stage]) -> String {
    let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
    let hint = closest(target, names.iter().copied())
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default();
    if names.is_empty() {
        format!(
            "--target {target:?}: the dockerfile has no named stage (name one with FROM … AS NAME)"
        )
    } else {
        format!(
            "--target {target:?}: no such stage{hint}; the named stages are: {}",
            names.join(", ")
        )
    }
}

/// A FROM or `--from` name that is no stage but is one typo away from a stage before it, with
/// no registry, tag or digest to say it is an image, is a mistake: reported before any pull
/// would look for it on docker.io.
fn stage_typo(name: &str, earlier: &[Stage]) -> Option<String> {
    if name.contains(['/', ':', '@']) || stage_ref(earlier, name).is_some() {
        return None;
    }
    let names = earlier.iter().filter_map(|s| s.name.as_deref());
    closest(name, names).map(str::to_string)
}

/// `COPY --from`, `ADD --from` and `RUN --mount from=` of stage `index`: no stage typo.
fn check_from_names(
    stages: &[Stage],
    index: usize,
    lookup: &HashMap<String, String>,
    escape: char,
) -> Result<()> {
    for ins in &stages[index].instructions {
        for from in from_names(ins) {
            let from = expand_word(from, lookup, escape).unwrap_or_else(|_| from.to_string());
            // its own name included: a stage cannot read itself, the likely one is a typo
            if let Some(stage) = stage_typo(&from, &stages[..=index]) {
                bail!(
                    "Dockerfile:{}: {} names {from:?}, which is no stage (did you mean stage \
                     {stage:?}?); an image needs a tag or registry ({from}:latest)",
                    ins.line,
                    ins.keyword
                );
            }
        }
    }
    Ok(())
}

/// The `--from` of a COPY/ADD and the `from=` of each RUN `--mount`, as written.
fn from_names(ins: &Instruction) -> impl Iterator<Item = &str> {
    let mounts = ins.flags_named("mount").flat_map(|f| {
        let value = f.value.as_deref().unwrap_or_default();
        value.split(',').filter_map(|kv| kv.strip_prefix("from="))
    });
    let copy_from = ins
        .flag("from")
        .filter(|_| matches!(ins.keyword, Keyword::Copy | Keyword::Add))
        .and_then(|f| f.value.as_deref());
    mounts.chain(copy_from)
}

/// An `ARG` before the first FROM: its value (a build-arg, else its expanded default) joins
/// the global scope.
fn global_arg(
    ins: &Instruction,
    build_args: &HashMap<String, String>,
    global_args: &mut HashMap<String, Option<String>>,
    escape: char,
) -> Result<()> {
    for (name, default) in ins.arg_decls()? {
        // BuildKit expands the name as well as the default
        let name = expand_word(&name, &global_lookup(global_args), escape)
            .with_context(|| format!("Dockerfile:{}: expanding ARG {name}", ins.line))?;
        let value = match build_args.get(&name) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => Some(
                    expand_word(&d, &global_lookup(global_args), escape).with_context(|| {
                        format!("Dockerfile:{}: expanding ARG {name}", ins.line)
                    })?,
                ),
                None => None,
            },
        };
        global_args.insert(name, value);
    }
    Ok(())
}

/// The stages `target` needs (its base, `COPY --from`, `RUN --mount from=`, transitively), in
/// Dockerfile order.
fn needed(
    stages: &[Stage],
    target: usize,
    lookup: &HashMap<String, String>,
    escape: char,
) -> Vec<usize> {
    let mut needed: BTreeSet<usize> = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let stage = &stages[i];
        if let Base::Stage(dep) = stage.base {
            todo.push(dep);
        }
        for ins in &stage.instructions {
            for from in from_names(ins) {
                let from = expand_word(from, lookup, escape).unwrap_or_else(|_| from.to_string());
                if let Some(dep) = stage_ref(&stages[..i], &from) {
                    todo.push(dep);
                }
            }
        }
    }
    needed.into_iter().collect()
}

/// The shell-form text of an instruction, or None for the exec form.
pub fn shell_text(ins: &Instruction) -> Option<&str> {
    match &ins.args {
        Args::Shell(t) => Some(t),
        Args::Exec(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    #[test]
    fn stages_target_and_pruning() {
        let df = parse(
            "ARG TAG=1\nFROM img:${TAG} AS a\nRUN x\nFROM scratch AS unused\nFROM a AS b\nCOPY --from=0 /x /y\nFROM b\n",
        )
        .unwrap();
        let host = Platform::host();
        let p = plan(&df, &[], Some("b"), &host).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("img:1".into()));
        assert_eq!(p.stages[2].base, Base::Stage(0));
        assert_eq!(p.target, 2);
        assert_eq!(p.order, vec![0, 2]);
        let p = plan(&df, &[("TAG".into(), "2".into())], None, &host).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("img:2".into()));
        assert_eq!(p.order, vec![0, 2, 3]);
    }

    #[test]
    fn errors_name_the_line() {
        let df = parse("RUN x\nFROM a\n").unwrap();
        let host = Platform::host();
        let e = plan(&df, &[], None, &host).unwrap_err().to_string();
        assert!(e.contains("Dockerfile:1"), "{e}");
        let df = parse("FROM a\n").unwrap();
        assert!(plan(&df, &[], Some("nope"), &host).is_err());
    }

    #[test]
    fn stage_typos_are_caught_before_any_pull() {
        let host = Platform::host();
        for (text, target, want) in [
            (
                "FROM scratch AS build\nFROM biuld\n",
                None,
                "Dockerfile:2: FROM biuld: no stage \"biuld\" before this one (did you mean stage \"build\"?)",
            ),
            (
                "FROM scratch AS build\nFROM scratch\nCOPY --from=biuld /a /b\n",
                None,
                "Dockerfile:3: COPY names \"biuld\", which is no stage (did you mean stage \"build\"?)",
            ),
            (
                "FROM scratch AS build\nFROM scratch AS test\n",
                Some("tset"),
                "--target \"tset\": no such stage (did you mean \"test\"?); the named stages are: build, test",
            ),
        ] {
            let df = parse(text).unwrap();
            let e = plan(&df, &[], target, &host).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        // a tag, a registry or a distant name is an image
        for text in [
            "FROM scratch AS build\nFROM biuld:1\n",
            "FROM scratch AS build\nFROM reg/biuld\n",
            "FROM scratch AS build\nFROM alpine\nCOPY --from=biuld:1 /a /b\n",
        ] {
            let df = parse(text).unwrap();
            assert!(plan(&df, &[], None, &host).is_ok(), "{text}");
        }
    }

    #[test]
    fn platform_args_reach_from() {
        let host = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let df = parse("FROM img-${TARGETARCH}:${TARGETOS}${TARGETVARIANT}\n").unwrap();
        let p = plan(&df, &[], None, &host).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("img-arm64:linuxv8".into()));
        // BUILDPLATFORM is the machine's, whatever the target
        let df =
            parse("FROM --platform=$BUILDPLATFORM img AS a\nFROM --platform=linux/arm/v7 b:1\n")
                .unwrap();
        let p = plan(&df, &[], None, &host).unwrap();
        assert_eq!(p.stages[0].platform, Some(Platform::host()));
        assert_eq!(
            p.stages[1]
                .platform
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("linux/arm/v7")
        );
    }
}
