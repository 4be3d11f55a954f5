//! Every form the macros accept compiles, keeps its meaning, and is measured.

mod common;

use std::fmt::Debug;
use std::marker::PhantomData;

use common::{block_on, exclusive};
use pipeline::{profiled, stage, Pipeline, Profiler, Stage, StageError};

// A generic stage type with a `where` clause on the impl.
struct Tag<T> {
    label: T,
}

#[stage]
impl<T> Tag<T>
where
    T: AsRef<str> + Send + Sync,
{
    /// Doc comments and other attributes on `process` are kept.
    #[allow(clippy::needless_pass_by_value)]
    fn process(&self, event: String) -> String {
        format!("{event}+{}", self.label.as_ref())
    }
}

// A stage generic over the event type, through `process`'s own type parameter.
struct Passthrough;

#[stage(name = "pass")]
impl Passthrough {
    fn process<E: Debug + Send>(&self, event: E) -> E {
        event
    }
}

// A stage returning its own error type, converted into `StageError`.
#[derive(Debug)]
struct TooLarge(u64);

impl From<TooLarge> for StageError {
    fn from(e: TooLarge) -> Self {
        StageError::rejected(format!("{} is too large", e.0))
    }
}

struct Limit<const N: u64>;

#[stage]
impl<const N: u64> Limit<N> {
    const MAX: u64 = N;

    fn process(&self, event: u64) -> Result<u64, TooLarge> {
        if event > Self::MAX {
            return Err(TooLarge(event));
        }
        Ok(event)
    }

    fn describe(&self) -> String {
        format!("at most {}", Self::MAX)
    }
}

// A stage whose type has a lifetime and a phantom parameter.
struct Borrowing<'a, M> {
    prefix: &'a str,
    _marker: PhantomData<M>,
}

#[stage]
impl<'a, M: Send + Sync> Borrowing<'a, M> {
    fn process(&self, event: String) -> Result<String, StageError> {
        Ok(format!("{}{event}", self.prefix))
    }
}

// #[profiled] on every kind of function.
struct Scorer {
    weight: u64,
}

impl Scorer {
    #[profiled]
    fn by_ref(&self, x: u64) -> u64 {
        self.weight * x
    }

    #[profiled]
    fn by_mut(&mut self, x: u64) -> u64 {
        self.weight += x;
        self.weight
    }

    #[profiled]
    fn by_value(self) -> u64 {
        self.weight
    }

    #[profiled]
    async fn by_ref_async(&self, x: u64) -> u64 {
        self.weight + x
    }
}

#[profiled]
fn generic_with_lifetimes<'a, T: AsRef<str> + ?Sized>(
    items: &'a [&'a T],
) -> impl Iterator<Item = usize> + 'a {
    items.iter().map(|s| s.as_ref().len())
}

#[profiled]
fn early_return(x: i32) -> Result<i32, String> {
    if x < 0 {
        return Err("negative".to_owned());
    }
    let parsed: i32 = "5".parse().map_err(|_| "unparsable".to_owned())?;
    Ok(x + parsed)
}

#[profiled]
unsafe fn read_first(ptr: *const u8) -> u8 {
    // SAFETY: callers pass a pointer to at least one byte.
    unsafe { *ptr }
}

#[profiled]
async fn async_with_question_mark(input: &str) -> Result<u32, std::num::ParseIntError> {
    let value: u32 = input.parse()?;
    Ok(value * 2)
}

#[profiled]
fn r#match(x: u8) -> u8 {
    x
}

#[test]
fn generated_stages_keep_their_meaning() {
    let _lock = exclusive();
    let tag = Tag { label: "eu" };
    // A generic stage without a name is named per instantiation.
    assert_eq!(tag.name(), "Tag<&str>");
    // Called directly, `process` is the user's own (their return type); through the pipeline's
    // trait, a `Result`.
    assert_eq!(tag.process("order".to_owned()), "order+eu");
    assert_eq!(Stage::process(&tag, "order".to_owned()).unwrap().unwrap(), "order+eu");
    assert_eq!(Stage::<u8>::name(&Passthrough), "pass");
    assert_eq!(Stage::<u8>::process(&Passthrough, 3).unwrap(), Some(3));
    assert_eq!(Limit::<10>.describe(), "at most 10");
    assert!(matches!(Limit::<10>.process(11), Err(TooLarge(11))));
    let err = Stage::process(&Limit::<10>, 11).unwrap_err();
    assert_eq!(err.to_string(), "rejected: 11 is too large");
    let prefix = String::from(">");
    let borrowing = Borrowing::<'_, ()> { prefix: &prefix, _marker: PhantomData };
    assert_eq!(Stage::process(&borrowing, "x".into()).unwrap().unwrap(), ">x");
}

#[test]
fn profiled_functions_keep_their_meaning_and_are_recorded() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    let mut scorer = Scorer { weight: 2 };
    assert_eq!(scorer.by_ref(3), 6);
    assert_eq!(scorer.by_mut(1), 3);
    assert_eq!(block_on(scorer.by_ref_async(1)).0, 4);
    assert_eq!(scorer.by_value(), 3);
    let words = ["a", "bcd"];
    let refs: Vec<&str> = words.to_vec();
    let lens: Vec<usize> = generic_with_lifetimes(&refs).collect();
    assert_eq!(lens, [1, 3]);
    assert_eq!(early_return(-1), Err("negative".to_owned()));
    assert_eq!(early_return(1), Ok(6));
    assert_eq!(unsafe { read_first([9u8].as_ptr()) }, 9);
    assert_eq!(block_on(async_with_question_mark("21")).0, Ok(42));
    assert!(block_on(async_with_question_mark("x")).0.is_err());
    assert_eq!(r#match(4), 4);

    let pipeline = Pipeline::new().stage(Limit::<100>).stage(Passthrough);
    assert!(pipeline.run(5).is_ok());
    let stop = pipeline.run(500).unwrap_err();
    assert_eq!(stop.stage(), "Limit<100>");
    assert_eq!(stop.stage_index(), 0);

    let report = profiler.finish().unwrap();
    // With the `off` feature the same code runs, and nothing is recorded.
    #[cfg(feature = "off")]
    assert!(report.outside_stages.is_empty() && report.stages.is_empty());
    #[cfg(not(feature = "off"))]
    {
        let calls = |name: &str| {
            report.outside_stages.iter().find(|f| f.name == name).map(|f| f.timing.calls)
        };
        assert_eq!(calls("macro_forms::Scorer::by_ref"), Some(1), "methods are named by type");
        assert_eq!(calls("macro_forms::Scorer::by_mut"), Some(1), "methods are named by type");
        assert_eq!(calls("macro_forms::Scorer::by_value"), Some(1), "methods are named by type");
        assert_eq!(
            calls("macro_forms::Scorer::by_ref_async"),
            Some(1),
            "methods are named by type"
        );
        assert_eq!(calls("macro_forms::generic_with_lifetimes"), Some(1));
        assert_eq!(calls("macro_forms::early_return"), Some(2), "early returns are still recorded");
        assert_eq!(calls("macro_forms::read_first"), Some(1));
        assert_eq!(calls("macro_forms::async_with_question_mark"), Some(2));
        assert_eq!(calls("macro_forms::match"), Some(1), "raw identifiers are named without r#");
        assert_eq!(report.stage("Limit<100>").unwrap().timing.calls, 2, "rejections are calls too");
        assert_eq!(report.stage("pass").unwrap().timing.calls, 1);
    }
}

// A function whose body starts with an inner attribute: it stays at the top of the body.
#[profiled]
fn with_inner_attribute(x: u32) -> u32 {
    #![allow(unused_variables)]
    let unused = 1;
    x * 2
}

// Stages whose return type names the event another way: an alias, a path, a `Result` of an
// alias. Whether they are fallible is the type system's call, not a comparison of tokens.
mod orders {
    #[derive(Debug, PartialEq)]
    pub struct Order(pub u32);
}
type Ev = orders::Order;

struct AliasReturn;

#[stage]
impl AliasReturn {
    fn process(&self, order: orders::Order) -> Ev {
        orders::Order(order.0 + 1)
    }
}

struct PathEvent;

#[stage]
impl PathEvent {
    fn process(&self, order: Ev) -> self::orders::Order {
        order
    }
}

struct AliasResult;

#[stage]
impl AliasResult {
    fn process(&self, order: orders::Order) -> Result<Ev, StageError> {
        if order.0 == 0 {
            return Err(StageError::rejected("zero"));
        }
        Ok(order)
    }
}

#[test]
fn inner_attributes_and_aliased_return_types_are_accepted_and_measured() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    assert_eq!(with_inner_attribute(21), 42);
    assert_eq!(AliasReturn.process(orders::Order(1)), orders::Order(2));
    assert_eq!(PathEvent.process(orders::Order(5)), orders::Order(5));
    assert!(matches!(AliasResult.process(orders::Order(0)), Err(StageError::Rejected { .. })));
    assert_eq!(AliasResult.process(orders::Order(3)).unwrap(), orders::Order(3));
    let report = profiler.finish().unwrap();
    // With the `off` feature the same forms compile and run, and nothing is recorded.
    if cfg!(feature = "off") {
        assert!(report.stages.is_empty() && report.outside_stages.is_empty());
        return;
    }
    for stage in ["AliasReturn", "PathEvent"] {
        assert_eq!(report.stage(stage).unwrap().timing.calls, 1, "{stage}");
    }
    assert_eq!(report.stage("AliasResult").unwrap().timing.calls, 2);
    let function = report.outside_stages.iter().find(|f| f.name.ends_with("with_inner_attribute"));
    assert_eq!(function.expect("recorded").timing.calls, 1);
}

// `&self` spelled out, and another method of the stage calling `process` as written.
struct SpelledOut {
    step: u32,
}

#[stage]
impl SpelledOut {
    /// Adds the step.
    fn process(self: &Self, event: u32) -> u32 {
        event + self.step
    }

    fn twice(&self, event: u32) -> u32 {
        self.process(self.process(event))
    }
}

#[test]
fn a_stages_own_process_stays_callable_as_written_and_is_measured() {
    let _lock = exclusive();
    let stage = SpelledOut { step: 2 };
    let profiler = Profiler::new().start().unwrap();
    // A stage's own unit test, with `Stage` in scope: the user's return type, not a `Result`.
    let direct: u32 = stage.process(1);
    assert_eq!(direct, 3);
    assert_eq!(stage.twice(1), 5);
    assert_eq!(Pipeline::new().stage(SpelledOut { step: 1 }).run(1).unwrap(), Some(2));
    let report = profiler.finish().unwrap();
    if cfg!(feature = "off") {
        assert!(report.stages.is_empty());
        return;
    }
    let calls = report.stage("SpelledOut").expect("one row for direct and pipeline calls");
    assert_eq!(calls.timing.calls, 4, "1 direct, 2 through another method, 1 in a pipeline");
}

#[derive(Debug)]
struct Bad;

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad")
    }
}

impl std::error::Error for Bad {}

// An early `return` in an `async fn` that needs a coercion to the declared type.
#[profiled]
async fn coerced_error(fail: bool) -> Result<u32, Box<dyn std::error::Error>> {
    if fail {
        return Err(Box::new(Bad));
    }
    Ok(1)
}

// Two early returns of different types, each coerced to the declared trait object.
#[profiled]
async fn coerced_display(which: u8) -> Box<dyn std::fmt::Display + Send> {
    if which == 0 {
        return Box::new(7u32);
    }
    if which == 1 {
        return Box::new("seven");
    }
    Box::new(7.0f64)
}

#[test]
fn async_early_returns_that_need_a_coercion_compile_and_are_measured() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    assert!(block_on(coerced_error(true)).0.is_err());
    assert_eq!(block_on(coerced_error(false)).0.unwrap(), 1);
    let shown: Vec<String> = (0..3).map(|w| block_on(coerced_display(w)).0.to_string()).collect();
    assert_eq!(shown, ["7", "seven", "7"]);
    let report = profiler.finish().unwrap();
    if cfg!(feature = "off") {
        return;
    }
    let calls =
        |name: &str| report.outside_stages.iter().find(|f| f.name == name).map(|f| f.timing.calls);
    assert_eq!(calls("macro_forms::coerced_error"), Some(2));
    assert_eq!(calls("macro_forms::coerced_display"), Some(3));
}

#[profiled]
async fn waits_then_panics(panic: bool) -> u32 {
    common::YieldTimes(2).await;
    if panic {
        panic!("async call exploded");
    }
    3
}

#[test]
fn panicking_and_cancelled_async_calls_are_counted_with_their_outcome() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    // Completes.
    assert_eq!(block_on(waits_then_panics(false)).0, 3);
    // Panics on its third poll.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(|| block_on(waits_then_panics(true)));
    std::panic::set_hook(hook);
    assert!(panicked.is_err());
    // Cancelled: polled once, then dropped (a timeout, a `select!` that took another branch).
    for _ in 0..2 {
        let mut future = Box::pin(waits_then_panics(false));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(future.as_mut(), &mut cx).is_pending());
        drop(future);
    }
    // Never polled: never started, not a call.
    drop(waits_then_panics(false));
    let report = profiler.finish().unwrap();
    if cfg!(feature = "off") {
        return;
    }
    let row = report
        .outside_stages
        .iter()
        .find(|f| f.name == "macro_forms::waits_then_panics")
        .expect("recorded");
    assert_eq!(row.timing.calls, 4, "1 completed, 1 panicked, 2 cancelled");
    assert_eq!((row.timing.panicked, row.timing.cancelled), (1, 2));
    assert!(report.to_string().contains("4 (1 panicked, 2 cancelled)"), "{report}");
}

// Hand-written futures: timed from their first poll to completion, not while being built.
#[profiled]
#[allow(clippy::manual_async_fn)] // the hand-written future is the form under test
fn later(x: u32) -> impl std::future::Future<Output = u32> + Send {
    async move {
        common::YieldTimes(3).await;
        common::spin_for(std::time::Duration::from_millis(2));
        x + 1
    }
}

#[profiled]
fn boxed_later<'a>(
    text: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + 'a>> {
    if text.is_empty() {
        return Box::pin(async { 0 }); // an early return still gives the future
    }
    Box::pin(async move {
        common::spin_for(std::time::Duration::from_millis(2));
        text.len()
    })
}

#[test]
fn functions_returning_futures_are_timed_until_the_future_completes() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    let (value, polls) = block_on(later(1));
    assert_eq!((value, polls), (2, 4));
    assert_eq!(block_on(boxed_later("abc")).0, 3);
    assert_eq!(block_on(boxed_later("")).0, 0);
    let report = profiler.finish().unwrap();
    if cfg!(feature = "off") {
        return;
    }
    let row = |name: &str| report.outside_stages.iter().find(|f| f.name == name).unwrap().timing;
    let later = row("macro_forms::later");
    assert_eq!(later.calls, 1);
    assert!(later.total_ns >= 2_000_000, "the future's run is timed: {} ns", later.total_ns);
    let boxed = row("macro_forms::boxed_later");
    assert_eq!(boxed.calls, 2);
    assert!(boxed.max_ns >= 2_000_000, "{} ns", boxed.max_ns);
}

// The same method name on two types, and a trait's default method: each type its own row.
struct Alice;
struct Bob;

impl Alice {
    #[profiled]
    fn greet(&self) -> &'static str {
        "alice"
    }
}

impl Bob {
    #[profiled]
    fn greet(&self) -> &'static str {
        "bob"
    }
}

trait Wave {
    #[profiled]
    fn wave(&self) -> u8 {
        1
    }
}

impl Wave for Alice {}
impl Wave for Bob {}

#[test]
fn methods_of_different_types_never_share_a_row() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    assert_eq!((Alice.greet(), Bob.greet(), Bob.greet()), ("alice", "bob", "bob"));
    assert_eq!(Alice.wave() + Bob.wave() + Bob.wave() + Bob.wave(), 4);
    let report = profiler.finish().unwrap();
    if cfg!(feature = "off") {
        return;
    }
    let calls =
        |name: &str| report.outside_stages.iter().find(|f| f.name == name).map(|f| f.timing.calls);
    assert_eq!(calls("macro_forms::Alice::greet"), Some(1));
    assert_eq!(calls("macro_forms::Bob::greet"), Some(2));
    assert_eq!(calls("macro_forms::Alice::wave"), Some(1), "a default method, per implementor");
    assert_eq!(calls("macro_forms::Bob::wave"), Some(3));
    assert_eq!(calls("macro_forms::greet"), None, "no shared row");
}
