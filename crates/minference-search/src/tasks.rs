//! Synthetic long-context tasks, generated in Rust from a seed (in the style of RULER):
//! a needle in a haystack, a pass key, several needles of which one is asked for, and
//! variable tracking through a chain of assignments.
//!
//! The haystack is varied filler prose (seeded sentences from small word lists), so attention
//! over it looks like attention over text rather than over one repeated line. Every prompt ends
//! with the question and the start of the answer; the model's greedy continuation is correct
//! when it contains the expected answer.

use minference_llama::Tokenizer;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKind {
    /// One fact ("the special magic number for Lisbon is 4827361") at a chosen depth.
    Needle,
    /// A pass key stated twice in a haystack.
    Passkey,
    /// Four facts about four cities; the question asks for one.
    MultiKey,
    /// `VAR A = 12345`, then `VAR B = VAR A`, …: which variables hold the value.
    VariableTracking,
    /// A JSON object of random key/value identifiers; the question asks for one key's value
    /// (MInference's calibration task; hard for small models).
    KvRetrieval,
}

impl TaskKind {
    /// Every task.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::Needle,
        TaskKind::Passkey,
        TaskKind::MultiKey,
        TaskKind::VariableTracking,
    ];

    /// Name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Needle => "needle",
            TaskKind::Passkey => "passkey",
            TaskKind::MultiKey => "multikey",
            TaskKind::VariableTracking => "vartrack",
            TaskKind::KvRetrieval => "kv-retrieval",
        }
    }

    /// The task of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([TaskKind::KvRetrieval])
            .find(|t| t.name() == name)
    }
}

/// One generated prompt with its expected answer.
#[derive(Debug, Clone)]
pub struct Task {
    /// What kind of task.
    pub kind: TaskKind,
    /// Relative depth of the (first) fact in the haystack, 0 = start, 1 = end.
    pub depth: f64,
    /// The prompt text (haystack, question, answer prefix).
    pub prompt: String,
    /// Strings that must all appear in the continuation.
    pub answers: Vec<String>,
}

impl Task {
    /// True when `output` contains every expected answer.
    pub fn is_correct(&self, output: &str) -> bool {
        self.answers.iter().all(|a| output.contains(a.as_str()))
    }
}

const SUBJECTS: &[&str] = &[
    "The old harbour",
    "A quiet village",
    "The research team",
    "Our neighbour",
    "The river",
    "The committee",
    "A young painter",
    "The morning train",
    "The library",
    "The orchard",
    "A travelling merchant",
    "The city council",
    "The lighthouse keeper",
    "The garden",
];
const VERBS: &[&str] = &[
    "watched",
    "described",
    "remembered",
    "carried",
    "built",
    "followed",
    "painted",
    "studied",
    "measured",
    "visited",
    "repaired",
    "collected",
    "crossed",
    "announced",
];
const OBJECTS: &[&str] = &[
    "the long winter road",
    "a basket of green apples",
    "the map of the northern hills",
    "an unfinished letter",
    "the bridge over the canal",
    "a row of wooden boats",
    "the results of the survey",
    "the sound of distant bells",
    "a box of old photographs",
    "the price of bread",
    "the edge of the forest",
    "a new set of stairs",
];
const TAILS: &[&str] = &[
    "before the rain began",
    "after a long discussion",
    "without saying a word",
    "while the sun was setting",
    "for the third time that year",
    "as everyone expected",
    "with great care",
    "in the early morning",
    "despite the cold wind",
    "once again",
];
const CITIES: &[&str] = &[
    "Lisbon", "Nairobi", "Kyoto", "Quito", "Oslo", "Hanoi", "Dakar", "Tbilisi", "Perth", "Lima",
    "Riga", "Accra",
];

/// One filler sentence.
fn sentence(rng: &mut StdRng) -> String {
    format!(
        " {} {} {} {}.",
        SUBJECTS.choose(rng).expect("non-empty"),
        VERBS.choose(rng).expect("non-empty"),
        OBJECTS.choose(rng).expect("non-empty"),
        TAILS.choose(rng).expect("non-empty")
    )
}

/// Builds prompts of a target length in tokens.
pub struct TaskBuilder<'a> {
    tokenizer: &'a Tokenizer,
}

impl<'a> TaskBuilder<'a> {
    /// A builder measuring lengths with `tokenizer`.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self { tokenizer }
    }

    fn tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text)
            .map_or(text.len() / 4, |t| t.len())
    }

    /// A task of `kind` whose prompt is close to (never above) `length` tokens, its fact at
    /// relative `depth`, drawn from `seed`.
    pub fn build(&self, kind: TaskKind, length: usize, depth: f64, seed: u64) -> Task {
        let mut rng = StdRng::seed_from_u64(seed ^ (length as u64) << 20);
        let number = |rng: &mut StdRng, digits: u32| {
            rng.random_range(10u64.pow(digits - 1)..10u64.pow(digits))
                .to_string()
        };
        let (facts, question, answers): (Vec<String>, String, Vec<String>) = match kind {
            TaskKind::Needle => {
                let city = CITIES.choose(&mut rng).expect("non-empty");
                let n = number(&mut rng, 7);
                (
                    vec![format!(" The special magic number for {city} is {n}.")],
                    format!("\n\nWhat is the special magic number for {city}? The special magic number for {city} is"),
                    vec![n],
                )
            }
            TaskKind::Passkey => {
                let n = number(&mut rng, 5);
                (
                    vec![format!(
                        " The pass key is {n}. Remember it. {n} is the pass key."
                    )],
                    "\n\nWhat is the pass key? The pass key is".to_string(),
                    vec![n],
                )
            }
            TaskKind::MultiKey => {
                let cities: Vec<&str> = CITIES.choose_multiple(&mut rng, 4).copied().collect();
                let numbers: Vec<String> = (0..4).map(|_| number(&mut rng, 7)).collect();
                let asked = rng.random_range(0..4);
                (
                    cities
                        .iter()
                        .zip(&numbers)
                        .map(|(c, n)| format!(" The special magic number for {c} is {n}."))
                        .collect(),
                    format!(
                        "\n\nWhat is the special magic number for {}? The special magic number for {} is",
                        cities[asked], cities[asked]
                    ),
                    vec![numbers[asked].clone()],
                )
            }
            TaskKind::VariableTracking => {
                let value = number(&mut rng, 5);
                let names: Vec<String> = ["QX", "JZ", "WK"]
                    .iter()
                    .map(|p| format!("{p}{}", rng.random_range(10..99)))
                    .collect();
                let mut facts = vec![format!(" VAR {} = {value}.", names[0])];
                for w in names.windows(2) {
                    facts.push(format!(" VAR {} = VAR {}.", w[1], w[0]));
                }
                (
                    facts,
                    format!("\n\nWhich variables are assigned the value {value}? Answer: VAR"),
                    names,
                )
            }
            TaskKind::KvRetrieval => return self.kv_retrieval(length, depth, &mut rng),
        };
        let fixed = self.tokens(&facts.concat()) + self.tokens(&question) + 1;
        let budget = length.saturating_sub(fixed);
        // Filler sentences until the budget is spent (each measured on its own).
        let mut filler = Vec::new();
        let mut used = 0;
        loop {
            let s = sentence(&mut rng);
            let t = self.tokens(&s);
            if used + t > budget {
                break;
            }
            used += t;
            filler.push(s);
        }
        // Per-sentence counts are close but not exact: drop filler until the prompt fits.
        let mut prompt = assemble(&filler, &facts, depth, &question);
        while self.tokens(&prompt) > length && !filler.is_empty() {
            filler.pop();
            prompt = assemble(&filler, &facts, depth, &question);
        }
        Task {
            kind,
            depth,
            prompt,
            answers,
        }
    }
}

impl TaskBuilder<'_> {
    /// A JSON object of `"key": "value"` identifier pairs filling `length` tokens; the asked
    /// key sits at `depth`.
    fn kv_retrieval(&self, length: usize, depth: f64, rng: &mut StdRng) -> Task {
        let id = |rng: &mut StdRng| {
            (0..4)
                .map(|_| format!("{:08x}", rng.random::<u32>()))
                .collect::<Vec<_>>()
                .join("-")
        };
        let mut pairs = Vec::new();
        let header = "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{";
        let pair_tokens = self.tokens(&format!("\"{}\": \"{}\", ", id(rng), id(rng)));
        let question_tokens = 60;
        let count =
            length.saturating_sub(self.tokens(header) + question_tokens) / pair_tokens.max(1);
        for _ in 0..count.max(1) {
            pairs.push((id(rng), id(rng)));
        }
        let asked = ((depth * pairs.len() as f64) as usize).min(pairs.len() - 1);
        let render = |pairs: &[(String, String)]| {
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{v}\""))
                .collect();
            format!(
                "{header}{}}}\n\nKey: \"{}\"\nThe value associated with the specified key is: \"",
                body.join(", "),
                pairs[asked.min(pairs.len() - 1)].0
            )
        };
        let mut prompt = render(&pairs);
        while self.tokens(&prompt) > length && pairs.len() > asked + 1 {
            pairs.pop();
            prompt = render(&pairs);
        }
        Task {
            kind: TaskKind::KvRetrieval,
            depth,
            answers: vec![pairs[asked].1.clone()],
            prompt,
        }
    }
}

/// The prompt: a header, the filler with the facts at their depths (the first at `depth`, the
/// others spread after it), the question.
fn assemble(filler: &[String], facts: &[String], depth: f64, question: &str) -> String {
    let slots = filler.len();
    let positions: Vec<usize> = (0..facts.len())
        .map(|i| {
            let d = depth + (1.0 - depth) * i as f64 / facts.len() as f64;
            ((d * slots as f64).round() as usize).min(slots)
        })
        .collect();
    let mut prompt = String::from("Read the text and answer the question.\n");
    let mut next = 0;
    for (i, s) in filler.iter().enumerate() {
        while next < facts.len() && positions[next] == i {
            prompt.push_str(&facts[next]);
            next += 1;
        }
        prompt.push_str(s);
    }
    for f in &facts[next..] {
        prompt.push_str(f);
    }
    prompt.push_str(question);
    prompt
}
