//! The provenance: a SLSA provenance v1 predicate (`https://slsa.dev/provenance/v1`) of one
//! build, with BuildKit's field names where SLSA leaves them open (`configSource`,
//! `request.args` as `build-arg:NAME`, `request.secrets` by id only, `buildConfig` in max
//! mode, `resolvedDependencies` as `pkg:docker/…` purls, a fetched context among them by
//! digest, a local one under `request.locals` by name). Secret values never reach it: only
//! their ids are given here. Times are the caller's (SOURCE_DATE_EPOCH for both under
//! `--reproducible`), so equal inputs give equal bytes.

use serde_json::{json, Map, Value};

/// `--provenance mode=…`: BuildKit's two levels of detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// the request, the dependencies, the times
    Min,
    /// and the Dockerfile's steps
    Max,
}

/// An input of the build by digest: a base or `COPY --from` image, a checked download, a
/// git commit, the fetched context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Material {
    /// `pkg:docker/<reference>?platform=…` or the URL
    pub uri: String,
    /// `sha256:<hex>` (`sha1:<hex>` for a git commit)
    pub digest: String,
    /// what else names this version of it (a `gs://` object's `generation`, an `s3://`
    /// object's `etag`): SLSA's resource descriptor `annotations`
    pub annotations: Vec<(String, String)>,
}

impl Material {
    /// An image pulled for `platform` (`linux/amd64`) as BuildKit names it.
    pub fn image(reference: &str, platform: &str, digest: &str) -> Material {
        Material {
            uri: format!(
                "pkg:docker/{reference}?platform={}",
                platform.replace('/', "%2F")
            ),
            digest: digest.to_string(),
            annotations: Vec::new(),
        }
    }

    /// A source fetched from `uri` with the given digest.
    pub fn fetched(uri: &str, digest: &str) -> Material {
        Material {
            uri: uri.to_string(),
            digest: digest.to_string(),
            annotations: Vec::new(),
        }
    }
}

/// One Dockerfile instruction of a built stage (max mode).
#[derive(Debug, Clone)]
pub struct Step {
    pub stage: String,
    pub line: usize,
    pub instruction: String,
}

/// What the provenance of one build says.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub mode: Mode,
    /// the Dockerfile's name as given and the `sha256:` of its bytes
    pub dockerfile: (String, String),
    /// the context as typed (credentials masked)
    pub context: String,
    /// the local sources the build read, by name (`context`, `dockerfile`), as BuildKit
    /// lists them under `request.locals`; a fetched context is a material instead
    pub locals: Vec<String>,
    pub build_args: Vec<(String, String)>,
    /// the `--secret` ids (never their values)
    pub secret_ids: Vec<String>,
    pub target: Option<String>,
    pub platform: String,
    pub materials: Vec<Material>,
    pub steps: Vec<Step>,
    pub started: String,
    pub finished: String,
    pub reproducible: bool,
}

/// `sha256:<hex>` as an in-toto digest set.
pub fn digest_set(digest: &str) -> Value {
    match digest.split_once(':') {
        Some((algorithm, hex)) => json!({ algorithm: hex }),
        None => json!({ "sha256": digest }),
    }
}

/// The SLSA provenance v1 predicate.
pub fn predicate(i: &Inputs) -> Value {
    let mut args = Map::new();
    for (k, v) in &i.build_args {
        args.insert(format!("build-arg:{k}"), Value::String(v.clone()));
    }
    if let Some(t) = &i.target {
        args.insert("target".into(), Value::String(t.clone()));
    }
    let mut materials = i.materials.clone();
    materials.sort();
    materials.dedup();
    let dependencies: Vec<Value> = materials
        .iter()
        .map(|m| {
            let mut d = json!({"uri": m.uri, "digest": digest_set(&m.digest)});
            if !m.annotations.is_empty() {
                let notes: Map<String, Value> = m
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                d["annotations"] = Value::Object(notes);
            }
            d
        })
        .collect();
    let locals: Vec<Value> = i.locals.iter().map(|n| json!({"name": n})).collect();
    let mut internal = json!({ "builderPlatform": i.platform });
    if i.mode == Mode::Max {
        let steps: Vec<Value> = i
            .steps
            .iter()
            .map(|s| json!({"stage": s.stage, "line": s.line, "instruction": s.instruction}))
            .collect();
        internal["buildConfig"] = json!({ "steps": steps });
    }
    json!({
        "buildDefinition": {
            "buildType": "https://kiln.invalid/provenance/build@v1",
            "externalParameters": {
                "configSource": {
                    "uri": i.context,
                    "path": i.dockerfile.0,
                    "digest": digest_set(&i.dockerfile.1),
                },
                "request": {
                    "frontend": "dockerfile.v0",
                    "args": args,
                    "secrets": i.secret_ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                    "locals": locals,
                    "platform": i.platform,
                },
            },
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": "kiln",
                "version": {"kiln": env!("CARGO_PKG_VERSION")},
            },
            "metadata": {
                "startedOn": i.started,
                "finishedOn": i.finished,
                "kiln_mode": match i.mode { Mode::Min => "min", Mode::Max => "max" },
                "kiln_reproducible": i.reproducible,
                "kiln_completeness": {"request": true, "resolvedDependencies": true},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(mode: Mode) -> Inputs {
        Inputs {
            mode,
            dockerfile: ("Dockerfile".into(), "sha256:ab".into()),
            context: "/ctx".into(),
            locals: vec!["context".into(), "dockerfile".into()],
            build_args: vec![("A".into(), "1".into())],
            secret_ids: vec!["tok".into()],
            target: None,
            platform: "linux/amd64".into(),
            materials: vec![Material::image("r/b:1", "linux/amd64", "sha256:cd")],
            steps: vec![Step {
                stage: "0".into(),
                line: 2,
                instruction: "RUN true".into(),
            }],
            started: "1970-01-01T00:00:00Z".into(),
            finished: "1970-01-01T00:00:00Z".into(),
            reproducible: true,
        }
    }

    #[test]
    fn min_and_max() {
        let min = predicate(&inputs(Mode::Min));
        assert_eq!(
            min.pointer("/buildDefinition/externalParameters/request/args/build-arg:A"),
            Some(&json!("1"))
        );
        assert_eq!(
            min.pointer("/buildDefinition/resolvedDependencies/0/uri"),
            Some(&json!("pkg:docker/r/b:1?platform=linux%2Famd64"))
        );
        assert!(min
            .pointer("/buildDefinition/internalParameters/buildConfig")
            .is_none());
        assert_eq!(
            min.pointer("/buildDefinition/externalParameters/request/locals/0/name"),
            Some(&json!("context"))
        );
        let mut object = inputs(Mode::Min);
        object.materials.push(Material {
            annotations: vec![("generation".into(), "7".into())],
            ..Material::fetched("gs://b/ctx.tar.gz", "sha256:ef")
        });
        let with_object = predicate(&object);
        let deps = with_object
            .pointer("/buildDefinition/resolvedDependencies")
            .and_then(Value::as_array)
            .unwrap();
        let gs = deps
            .iter()
            .find(|d| d["uri"] == "gs://b/ctx.tar.gz")
            .unwrap();
        assert_eq!(gs["annotations"]["generation"], "7");
        assert_eq!(gs["digest"]["sha256"], "ef");
        let max = predicate(&inputs(Mode::Max));
        assert_eq!(
            max.pointer("/buildDefinition/internalParameters/buildConfig/steps/0/line"),
            Some(&json!(2))
        );
    }
}
