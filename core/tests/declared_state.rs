//! Declared state and side outputs through the `TestDriver`: lists, map
//! iteration, time to live, and the refusals of what is not declared.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_core::prelude::*;
use weir_core::serdes::{Json, Utf8};
use weir_core::state::StateDescriptor;
use weir_core::testing::TestDriver;

const SEEN: ListDescriptor<String> = ListDescriptor::new("seen");
const BY_LEN: MapDescriptor<u32, String> = MapDescriptor::new("by_len");
const LAST: ValueDescriptor<String> = ValueDescriptor::new("last").with_ttl(Duration::from_secs(1));
const RECENT: ListDescriptor<String> =
    ListDescriptor::new("recent").with_ttl(Duration::from_secs(1));
const LONG: OutputTag<String, usize> = OutputTag::new("long");

/// Keeps every value in a list, the last one with a time to live, and
/// each length's latest value in a map; values longer than 5 bytes also
/// go to a side output.
#[derive(Clone)]
struct Keeper;

impl Processor for Keeper {
    type Key = String;
    type In = String;
    type Out = usize;

    fn declare(&self, d: &mut Declarations) {
        d.state(&SEEN)
            .state(&BY_LEN)
            .state(&LAST)
            .state(&RECENT)
            .output(&LONG);
    }

    async fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        ctx.state(&SEEN)?.add(&r.value)?;
        ctx.state(&RECENT)?.add(&r.value)?;
        ctx.state(&LAST)?.put(&r.value)?;
        let len = r.value.len() as u32;
        ctx.state(&BY_LEN)?.put(&len, &r.value)?;
        let n = ctx.state(&SEEN)?.iter()?.count();
        if r.value.len() > 5 {
            ctx.output(&LONG, r.key.clone(), r.value.len())?;
        }
        ctx.emit(r.key, n);
        Ok(())
    }
}

fn k(s: &str) -> String {
    s.to_owned()
}

#[tokio::test]
async fn a_list_keeps_its_order_and_forgets_an_uncommitted_epoch() -> Result<()> {
    let mut d = TestDriver::new(Keeper).await?;
    for v in ["a", "bb", "ccc"] {
        d.pipe(k("x"), k(v)).await?;
    }
    d.pipe(k("y"), k("z")).await?;
    d.checkpoint();
    d.pipe(k("x"), k("dddd")).await?;
    assert_eq!(d.list(&k("x"), &SEEN)?, ["a", "bb", "ccc", "dddd"]);
    d.crash_and_restore().await?;
    assert_eq!(d.list(&k("x"), &SEEN)?, ["a", "bb", "ccc"]);
    assert_eq!(
        d.list(&k("y"), &SEEN)?,
        ["z"],
        "keys keep lists of their own"
    );
    // Adding after the restart numbers on from the committed length.
    d.pipe(k("x"), k("e")).await?;
    assert_eq!(d.list(&k("x"), &SEEN)?, ["a", "bb", "ccc", "e"]);
    let counts: Vec<usize> = d.output().iter().map(|r| r.value).collect();
    assert_eq!(counts, [1, 2, 3, 1, 4]);
    Ok(())
}

#[tokio::test]
async fn a_map_iterates_in_key_order_and_a_list_can_be_replaced() -> Result<()> {
    #[derive(Clone)]
    struct Replace;
    impl Processor for Replace {
        type Key = String;
        type In = Vec<String>;
        type Out = Vec<(u32, String)>;
        fn declare(&self, d: &mut Declarations) {
            d.state(&SEEN).state(&BY_LEN);
        }
        async fn process(
            &mut self,
            r: Record<String, Vec<String>>,
            ctx: &mut Context<'_, Self>,
        ) -> Result<()> {
            let mut map = ctx.state(&BY_LEN)?;
            for v in &r.value {
                map.put(&(v.len() as u32), v)?;
            }
            assert!(map.contains(&1)?);
            assert!(!map.contains(&9)?);
            let entries = map.iter()?.collect::<Result<Vec<_>>>()?;
            ctx.state(&SEEN)?.update(r.value)?;
            ctx.emit(r.key, entries);
            Ok(())
        }
    }
    let mut d = TestDriver::new(Replace).await?;
    d.pipe(k("x"), vec![k("ccc"), k("a"), k("bb")]).await?;
    d.pipe(k("x"), vec![k("q")]).await?;
    let out: Vec<&Vec<(u32, String)>> = d.output().iter().map(|r| &r.value).collect();
    assert_eq!(
        out[1],
        &vec![(1, k("q")), (2, k("bb")), (3, k("ccc"))],
        "ordered by key, the newest value of each"
    );
    assert_eq!(d.list(&k("x"), &SEEN)?, ["q"], "update replaces the list");
    Ok(())
}

#[tokio::test]
async fn values_and_elements_with_a_ttl_expire_in_processing_time_and_a_write_renews_them(
) -> Result<()> {
    let mut d = TestDriver::new(Keeper).await?;
    d.advance_processing_time(10_000).await?;
    d.pipe(k("x"), k("a")).await?;
    d.advance_processing_time(10_600).await?;
    d.pipe(k("x"), k("b")).await?;
    d.checkpoint();
    d.advance_processing_time(11_000).await?;
    assert_eq!(d.value(&k("x"), &LAST)?, Some(k("b")), "renewed at 10.6 s");
    assert_eq!(d.list(&k("x"), &RECENT)?, ["b"], "`a` expired at 11 s");
    assert_eq!(
        d.list(&k("x"), &SEEN)?,
        ["a", "b"],
        "no ttl, nothing expires"
    );
    d.advance_processing_time(11_600).await?;
    assert_eq!(d.value(&k("x"), &LAST)?, None);
    assert!(d.list(&k("x"), &RECENT)?.is_empty());
    // Expiry is stored with the value: it holds across a restart.
    d.crash_and_restore().await?;
    assert_eq!(d.value(&k("x"), &LAST)?, None);
    // The expired list starts again, its old elements unseen.
    d.pipe(k("x"), k("c")).await?;
    assert_eq!(d.list(&k("x"), &RECENT)?, ["c"]);
    Ok(())
}

#[tokio::test]
async fn side_outputs_carry_their_declared_types() -> Result<()> {
    let mut d = TestDriver::new(Keeper).await?;
    d.pipe(k("x"), k("short")).await?;
    d.pipe(k("x"), k("longer")).await?;
    let long: Vec<(&str, usize)> = d
        .side_output(&LONG)
        .iter()
        .map(|r| (r.key.as_str(), r.value))
        .collect();
    assert_eq!(long, [("x", 6)]);
    Ok(())
}

/// Reaches state and outputs it does not declare, as the test says.
#[derive(Clone)]
struct Sloppy {
    read: &'static str,
}

const COUNT: ValueDescriptor<u64> = ValueDescriptor::new("count");
const COUNT_AS_TEXT: ValueDescriptor<String> = ValueDescriptor::new("count");
const OTHER: ValueDescriptor<u64> = ValueDescriptor::new("other");
const COUNT_AS_LIST: ListDescriptor<u64> = ListDescriptor::new("count");
const COUNT_EXPIRING: ValueDescriptor<u64> =
    ValueDescriptor::new("count").with_ttl(Duration::from_secs(1));

impl Processor for Sloppy {
    type Key = String;
    type In = ();
    type Out = ();

    fn declare(&self, d: &mut Declarations) {
        d.state(&COUNT);
    }

    async fn process(&mut self, _r: Record<String, ()>, ctx: &mut Context<'_, Self>) -> Result<()> {
        match self.read {
            "declared" => ctx.state(&COUNT)?.put(&1),
            "undeclared" => ctx.state(&OTHER)?.put(&1),
            "as text" => ctx.state(&COUNT_AS_TEXT)?.put(&"1".to_owned()),
            "as list" => ctx.state(&COUNT_AS_LIST)?.add(&1),
            "expiring" => ctx.state(&COUNT_EXPIRING)?.put(&1),
            _ => ctx.output(&LONG, "k".to_owned(), 1),
        }
    }
}

#[tokio::test]
async fn state_and_outputs_not_declared_are_refused_naming_them() -> Result<()> {
    let err = |read| async move {
        let mut d = TestDriver::new(Sloppy { read }).await?;
        d.pipe(k("a"), ()).await?;
        Ok::<_, Error>(())
    };
    err("declared").await?;
    let e = err("undeclared").await.expect_err("undeclared").to_string();
    assert!(
        e.contains("`other`: value<u64>") && e.contains("does not declare"),
        "{e}"
    );
    let e = err("as text").await.expect_err("another type").to_string();
    assert!(
        e.contains("as value<alloc::string::String>") && e.contains("declares it as value<u64>"),
        "{e}"
    );
    let e = err("as list").await.expect_err("another kind").to_string();
    assert!(e.contains("as list<u64>"), "{e}");
    let e = err("expiring").await.expect_err("with a ttl").to_string();
    assert!(e.contains("as value<u64> with ttl"), "{e}");
    let e = err("output")
        .await
        .expect_err("undeclared output")
        .to_string();
    assert!(
        e.contains("side output `long`") && e.contains("does not declare"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn a_name_declared_twice_with_other_types_is_refused() {
    #[derive(Clone)]
    struct Twice;
    impl Processor for Twice {
        type Key = String;
        type In = ();
        type Out = ();
        fn declare(&self, d: &mut Declarations) {
            d.state(&COUNT).state(&COUNT_AS_TEXT);
        }
        async fn process(
            &mut self,
            _: Record<String, ()>,
            _: &mut Context<'_, Self>,
        ) -> Result<()> {
            Ok(())
        }
    }
    let e = TestDriver::new(Twice)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("declares the state `count` twice"), "{e}");
}

#[tokio::test]
async fn open_sees_its_worker_key_groups_and_settings() -> Result<()> {
    const WINDOW: ValueDescriptor<i64> = ValueDescriptor::new("window");
    #[derive(Clone, Default)]
    struct Configured {
        window_ms: i64,
    }
    impl Processor for Configured {
        type Key = String;
        type In = ();
        type Out = i64;
        fn declare(&self, d: &mut Declarations) {
            d.state(&WINDOW);
        }
        async fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<()> {
            assert_eq!(ctx.task(), "test");
            assert_eq!(ctx.groups().len(), usize::from(ctx.key_groups()));
            assert_eq!(ctx.declared().states().len(), 1);
            self.window_ms = ctx.parse("window_ms")?.unwrap_or(1);
            Ok(())
        }
        async fn process(
            &mut self,
            r: Record<String, ()>,
            ctx: &mut Context<'_, Self>,
        ) -> Result<()> {
            ctx.emit(r.key, self.window_ms);
            Ok(())
        }
    }
    let settings = BTreeMap::from([(k("window_ms"), k("60000"))]);
    let mut d = TestDriver::with_settings(Configured::default(), settings).await?;
    d.pipe(k("a"), ()).await?;
    assert_eq!(d.output()[0].value, 60_000);
    let bad = BTreeMap::from([(k("window_ms"), k("soon"))]);
    let e = TestDriver::with_settings(Configured::default(), bad)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("`window_ms` = `soon` does not parse"), "{e}");
    Ok(())
}

/// A visit, stored as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Visit {
    page: String,
    n: u32,
}

const LATEST: ValueDescriptor<Visit, Json<Visit>> =
    ValueDescriptor::new("latest").with_serde(Json::new());
const BY_PAGE: MapDescriptor<String, Visit, Json<Visit>> =
    MapDescriptor::new("by_page").with_serde(Json::new());
const TRAIL: ListDescriptor<String, Utf8> = ListDescriptor::new("trail")
    .with_serde(Utf8)
    .with_ttl(Duration::from_secs(60));

/// Keeps each key's latest visit, its latest per page and its trail of
/// pages, each in a store with a serde of its own.
#[derive(Clone)]
struct Visits;

impl Processor for Visits {
    type Key = String;
    type In = Visit;
    type Out = usize;

    fn declare(&self, d: &mut Declarations) {
        d.state(&LATEST).state(&BY_PAGE).state(&TRAIL);
    }

    async fn process(
        &mut self,
        r: Record<String, Visit>,
        ctx: &mut Context<'_, Self>,
    ) -> Result<()> {
        ctx.state(&LATEST)?.put(&r.value)?;
        ctx.state(&BY_PAGE)?.put(&r.value.page, &r.value)?;
        ctx.state(&TRAIL)?.add(&r.value.page)?;
        let pages = ctx.state(&BY_PAGE)?.iter()?.count();
        ctx.emit(r.key, pages);
        Ok(())
    }
}

#[tokio::test]
async fn stores_with_a_serde_of_their_own_write_its_bytes_and_read_them_back() -> Result<()> {
    let visit = |page: &str, n| Visit {
        page: page.to_owned(),
        n,
    };
    let mut d = TestDriver::new(Visits).await?;
    d.pipe(k("u"), visit("home", 1)).await?;
    d.pipe(k("u"), visit("cart", 2)).await?;
    d.checkpoint();
    d.pipe(k("u"), visit("home", 3)).await?;
    d.crash_and_restore().await?;
    assert_eq!(d.value(&k("u"), &LATEST)?, Some(visit("cart", 2)));
    assert_eq!(
        d.map_entries(&k("u"), &BY_PAGE)?,
        [(k("cart"), visit("cart", 2)), (k("home"), visit("home", 1))]
    );
    assert_eq!(d.list(&k("u"), &TRAIL)?, ["home", "cart"]);
    // The bytes are the serdes': JSON a tool reads, and UTF-8 text after
    // the time to live's expiry.
    let raw = d.raw_state();
    let holds = |bytes: &[u8]| raw.iter().any(|(_, v)| v.ends_with(bytes));
    assert!(holds(br#"{"page":"cart","n":2}"#));
    assert!(holds(br#"{"page":"home","n":1}"#));
    assert!(holds(b"cart") && holds(b"home"));
    // The serde is part of the store's signature, so that state written
    // with another is refused at start as another type is.
    let sig = LATEST.spec().signature();
    assert!(
        sig.ends_with("Visit as json<declared_state::Visit>>"),
        "{sig}"
    );
    assert_eq!(
        TRAIL.spec().signature(),
        "list<alloc::string::String as utf8> with ttl"
    );
    assert_eq!(SEEN.spec().signature(), "list<alloc::string::String>");
    Ok(())
}
