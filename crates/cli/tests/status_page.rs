//! The status page in a real headless browser: `doorsync run` against simulated Kisi and
//! Nexudus, a member with bookings made in Nexudus, and an operator at the front desk who sees who
//! opens which door now and next, searches and filters the members, follows a member's link to
//! their timeline, looks at the system and the dead letters, and drops one. Every page is laid
//! out 400 and 1400 pixels wide, must not be wider than the window, and is photographed (into
//! `docs/screenshots/` with `DOORSYNC_SCREENSHOTS=save`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::SocketAddr;

use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::{Browser, Site, attribute, element_containing, minutes_from, nexudus_time, now, wait_until};

/// Where the screenshots for the README are kept, from this crate: the test saves them there when
/// `DOORSYNC_SCREENSHOTS=save` (so that a test run does not rewrite files of the repository),
/// and in a scratch directory otherwise.
const SCREENSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots");

/// The name is built to break a page that does not escape it.
const ADA: &str = "Ada <Lovelace> & \"Co\"";
const ADA_ESCAPED: &str = "Ada &lt;Lovelace&gt; &amp; \"Co\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_follows_a_member_from_the_overview_to_their_timeline() {
    let browser = Browser::find();
    let site = Site::start().await;
    let kisi = site.kisi();
    let room_doors = kisi.add_group("Room 1 doors");
    let studio_doors = kisi.add_group("Studio doors");
    let nexudus = &site.nexudus;
    let business = nexudus.create_location("Soho", "GMT Standard Time").unwrap();
    let resource =
        |name: &str| nexudus.create(SimEntity::Resource, json!({"BusinessId": business, "Name": name})).unwrap();
    let (room, studio, booth) = (resource("Room 1"), resource("Studio"), resource("Phone booth"));
    // The end of the configuration, after `[admin]`'s listen key: the operator reads the page in
    // Paris while the site is in London.
    let configuration_end = format!(
        "time_zone = \"Europe/Paris\"\n\n[[mapping]]\nresource = {room}\nkisi_group = {}\n\n[[mapping]]\n\
         resource = {studio}\nkisi_group = {}\n",
        room_doors.0, studio_doors.0
    );
    let doorsync = site.run_doorsync(&configuration_end).await;
    site.register_webhooks(&doorsync);

    let ada = nexudus
        .create(SimEntity::Coworker, json!({"FullName": ADA, "Email": "ada@example.com", "Active": true}))
        .unwrap();
    let start = now();
    let book = |resource: u64, from: i64, to: i64, tentative: bool| {
        let fields = json!({"ResourceId": resource, "CoworkerId": ada, "Tentative": tentative,
            "FromTime": nexudus_time(minutes_from(start, from)), "ToTime": nexudus_time(minutes_from(start, to))});
        nexudus.create(SimEntity::Booking, fields).unwrap()
    };
    let under_way = book(room, -30, 30, false);
    let later_today = book(studio, 180, 240, false);
    let tentative = book(room, 300, 360, true);
    let unmapped = book(booth, 60, 120, false);

    wait_until("Kisi holds Ada's room and studio assignments", || {
        let kisi = kisi.clone();
        async move {
            let Some(user) = kisi.user_by_email("ada@example.com") else { return false };
            let groups: Vec<_> =
                kisi.assignments().into_iter().filter(|held| held.user == user.id).map(|held| held.group).collect();
            groups.contains(&room_doors) && groups.contains(&studio_doors)
        }
    })
    .await;
    wait_until("the writer has nothing left to write", || async {
        let status = doorsync.status().await;
        status["writer"]["backlog_commands"] == 0 && status["writer"]["commands_applied"].as_u64() >= Some(3)
    })
    .await;

    // Kisi refuses Bo's grant for good: it becomes a dead letter.
    kisi.inject(
        FaultRule::new(Fault::Status { status: 404, retry_after: None })
            .method("POST")
            .path("/role_assignments")
            .times(1),
    );
    let bo = nexudus
        .create(SimEntity::Coworker, json!({"FullName": "Bo", "Email": "bo@example.com", "Active": true}))
        .unwrap();
    let fields = json!({"ResourceId": room, "CoworkerId": bo, "Tentative": false,
        "FromTime": nexudus_time(minutes_from(start, 0)), "ToTime": nexudus_time(minutes_from(start, 60))});
    nexudus.create(SimEntity::Booking, fields).unwrap();
    wait_until("Bo's grant is dead-lettered", || async { doorsync.status().await["writer"]["dead_letters"] == 1 })
        .await;

    // The page is behind the admin token; the browser goes through a proxy that adds it.
    for path in ["/", "/system", &format!("/members/{ada}"), "/dead-letters"] {
        assert_eq!(doorsync.status_without_token(path).await, 401, "{path} without the token");
    }
    let proxy = support::token_proxy(doorsync.admin).await;
    let base = format!("http://{proxy}");
    let doors = Doors { room: room_doors.0, studio: studio_doors.0 };

    wait_until("the engine heard that Kisi created Ada's user", || {
        let search = format!("{base}/?q=ada%40example.com");
        async move {
            let page = reqwest::get(search).await.unwrap().text().await.unwrap();
            page.contains("Kisi user: enabled")
        }
    })
    .await;
    let link = the_front_desk_says_who_opens_which_door(&browser, &base, ada, bo, &doors).await;
    let bookings = Bookings { under_way, later_today, tentative, unmapped };
    the_member_page_draws_the_timeline(&browser, &base, &link, &doors, bookings).await;
    the_system_page_shows_the_roles(&browser, &base).await;

    let sequence = the_dead_letters_show_bos_refused_grant(&browser, &base, bo, &doors).await;
    every_page_fits_400_pixels_and_is_photographed(&browser, proxy, &link).await;

    a_session_drops_the_letter_with_the_pages_csrf_token(doorsync.admin, &sequence).await;

    let log = doorsync.log();
    assert!(
        !log.contains("ada@example.com") && !log.contains("Lovelace"),
        "names and emails stay out of the log: {log}"
    );
    let exit = doorsync.stop().await;
    assert!(exit.success(), "doorsync exits cleanly on SIGTERM: {exit}");
    site.stop().await;
}

/// The Kisi groups of the test's site.
struct Doors {
    room: u64,
    studio: u64,
}

/// Ada's bookings.
struct Bookings {
    under_way: u64,
    later_today: u64,
    tentative: u64,
    unmapped: u64,
}

/// The first screen, the search by name or email, the filters and `/members/<email>`; returns the
/// link to Ada's page.
async fn the_front_desk_says_who_opens_which_door(
    browser: &Browser,
    base: &str,
    ada: u64,
    bo: u64,
    doors: &Doors,
) -> String {
    let desk = browser.dom(&format!("{base}/")).await;
    assert!(desk.contains("<title>Front desk · doorsync</title>"), "{desk}");
    assert!(!desk.to_lowercase().contains("<lovelace"), "the name must not become markup: {desk}");
    assert!(desk.contains("aria-checked=\"false\"") && desk.contains("Auto-refresh: off"), "{desk}");
    let clock = element_containing(&desk, "class=\"clock\"", "span").unwrap();
    assert!(clock.contains("Europe/Paris"), "the page's clock is in admin.time_zone: {clock}");
    let now_list = desk.split("<h2>Can open doors now</h2>").nth(1).and_then(|rest| rest.split("<h2>").next());
    let now_list = now_list.expect("the list of who can open doors now");
    let row = element_containing(now_list, ADA_ESCAPED, "tr").expect("Ada can open a door now");
    let link = attribute(row, "href").expect("a link in Ada's row").to_owned();
    assert_eq!(link, format!("/members/{ada}"));
    assert!(row.contains("ada@example.com") && row.contains("Kisi user: enabled"), "{row}");
    let now_cell = element_containing(row, "class=\"now\"", "td").unwrap();
    assert!(now_cell.contains(&format!("data-group=\"{}\"", doors.room)), "in the room's group now: {row}");
    let next_cell = element_containing(row, "class=\"next\"", "td").unwrap();
    assert!(next_cell.contains(&format!("data-group=\"{}\"", doors.studio)), "in the studio's group next: {row}");
    assert!(now_cell.contains("Room 1 doors") && next_cell.contains("Studio doors"), "doors by name: {row}");
    assert!(now_cell.contains("Europe/London"), "times in the location's zone, named: {row}");

    let found = browser.dom(&format!("{base}/?q=ADA%40EXAMPLE")).await;
    assert!(found.contains(&format!("<tr data-member=\"{ada}\"")), "found by email, ignoring case: {found}");
    assert!(!found.contains(&format!("<tr data-member=\"{bo}\"")), "{found}");
    let by_name = browser.dom(&format!("{base}/?q=bo")).await;
    assert!(by_name.contains(&format!("<tr data-member=\"{bo}\"")), "{by_name}");
    let with_letters = browser.dom(&format!("{base}/?filter=dead-letters")).await;
    assert!(with_letters.contains(&format!("<tr data-member=\"{bo}\"")), "{with_letters}");
    assert!(!with_letters.contains(&format!("<tr data-member=\"{ada}\"")), "{with_letters}");
    let soon = browser.dom(&format!("{base}/?filter=opens-soon")).await;
    assert!(soon.contains(&format!("<tr data-member=\"{ada}\"")), "the studio opens within 4 hours: {soon}");
    let suspended = browser.dom(&format!("{base}/?filter=suspended-in-kisi")).await;
    assert!(suspended.contains("No member matches."), "{suspended}");

    let by_email = browser.dom(&format!("{base}/members/ada@example.com")).await;
    assert!(by_email.contains(&format!("<h1>{ADA_ESCAPED}")), "/members/<email> is the member's page: {by_email}");
    let reloading = browser.dom(&format!("{base}/?q=ada&refresh=10")).await;
    assert!(reloading.contains("<meta http-equiv=\"refresh\" content=\"10\">"), "{reloading}");
    assert!(reloading.contains("href=\"/?q=ada\">Auto-refresh: every 10 s</a>"), "{reloading}");
    link
}

async fn the_member_page_draws_the_timeline(
    browser: &Browser,
    base: &str,
    link: &str,
    doors: &Doors,
    bookings: Bookings,
) {
    let timeline = browser.dom(&format!("{base}{link}")).await;
    assert!(timeline.contains(&format!("<h1>{ADA_ESCAPED}")), "{timeline}");
    assert!(!timeline.to_lowercase().contains("<lovelace"));
    let heading = element_containing(&timeline, "<h1>", "h1").unwrap();
    let kisi_side = timeline.split("<h2>In Kisi").nth(1).unwrap_or_default();
    assert!(heading.contains("Kisi user: enabled"), "{heading} {kisi_side}");
    let agenda = element_containing(&timeline, "class=\"agenda\"", "ul").expect("the doors as a list");
    assert!(agenda.contains(&format!("data-group=\"{}\"", doors.room)), "{agenda}");
    let svg = element_containing(&timeline, "<svg class=\"timeline\"", "svg").expect("the timeline picture");
    assert!(svg.contains("Times in ") && svg.contains("class=\"now\""));
    let room_lane = element_containing(svg, &format!("data-group=\"{}\"", doors.room), "g").unwrap();
    for drawn in [
        format!("data-label=\"booking {} · ", bookings.under_way),
        "class=\"bar access\"".to_owned(),
        "class=\"bar booking\"".to_owned(),
        "class=\"bar kisi\"".to_owned(),
    ] {
        assert!(svg.contains(&drawn), "{drawn} in the picture: {svg}");
    }
    assert!(room_lane.contains("class=\"lanehead\""), "the room's lane has its heading: {room_lane}");
    assert!(svg.contains(&format!("data-label=\"booking {} · Studio · Soho\"", bookings.later_today)), "{svg}");
    assert!(svg.contains(&format!("data-group=\"{}\"", doors.studio)));
    let idle = element_containing(&timeline, "class=\"idle stack\"", "table").expect("what grants nothing");
    assert!(idle.contains(&format!("booking {}", bookings.tentative)) && idle.contains("tentative booking"));
    assert!(idle.contains(&format!("booking {}", bookings.unmapped)) && idle.contains("no Kisi group"));
    let kisi_side = element_containing(&timeline, "class=\"assignments stack\"", "table").expect("Kisi's assignments");
    assert!(
        kisi_side.contains(&format!("data-group=\"{}\"", doors.room))
            && kisi_side.contains(&format!("data-group=\"{}\"", doors.studio)),
        "{kisi_side}"
    );
    let history = element_containing(&timeline, "class=\"history stack\"", "table").expect("the history");
    assert!(history.contains(&format!("booking {}", bookings.under_way)), "{history}");
    assert!(history.contains(" Europe/Paris</td>"), "the history in the operator's zone: {history}");
    assert!(history.contains("Room 1 · Soho"), "the history names the room and its location: {history}");
    assert!(!history.contains(".000Z"), "the history's summaries say local times, not UTC: {history}");
}

async fn the_system_page_shows_the_roles(browser: &Browser, base: &str) {
    let system = browser.dom(&format!("{base}/system")).await;
    assert!(system.contains("<a href=\"/system\" aria-current=\"page\">System</a>"), "{system}");
    let engine = element_containing(&system, "id=\"engine\"", "section").unwrap();
    assert!(engine.contains("Wakeups scheduled"), "{engine}");
    let writer = element_containing(&system, "id=\"writer\"", "section").unwrap();
    assert!(writer.contains(">active<"), "{writer}");
    assert!(writer.contains("1 in the dead-letter stream") && writer.contains(">succeeded<"), "{writer}");
    let ingest = element_containing(&system, "id=\"ingest\"", "section").unwrap();
    assert!(ingest.contains(" accepted, ") && !ingest.contains("<dd>0 accepted"), "webhooks arrived: {ingest}");
    assert!(ingest.contains(">booking_changed<"), "events by type: {ingest}");
}

/// Each page laid out 400 and 1400 pixels wide is no wider than its window, and its screenshot
/// goes to `<page>-<width>.png` (in `docs/screenshots/` with `DOORSYNC_SCREENSHOTS=save`). A page made too wide on purpose proves the
/// check can fail.
async fn every_page_fits_400_pixels_and_is_photographed(browser: &Browser, proxy: SocketAddr, member: &str) {
    let base = format!("http://{proxy}");
    let control = browser.overflow(proxy, support::TOO_WIDE, 400).await;
    assert!(control.starts_with("overflow "), "a 900 px page must not fit 400 px: {control}");

    let scratch = tempfile::tempdir().unwrap();
    let save = std::env::var("DOORSYNC_SCREENSHOTS").is_ok_and(|value| value == "save");
    let screenshots = if save { std::path::Path::new(SCREENSHOTS) } else { scratch.path() };
    std::fs::create_dir_all(screenshots).unwrap();
    for (name, path) in
        [("front-desk", "/"), ("member", member), ("dead-letters", "/dead-letters"), ("system", "/system")]
    {
        for width in [400, 1400] {
            let fits = browser.overflow(proxy, path, width).await;
            assert!(fits.starts_with("fits "), "{path} at {width} px is wider than the window: {fits}");
            let png = screenshots.join(format!("{name}-{width}.png"));
            browser.screenshot(&format!("{base}{path}"), width, 900, &png).await;
        }
    }
}

/// Bo's grant, which Kisi refused for good, with its reason; returns the letter's sequence.
async fn the_dead_letters_show_bos_refused_grant(browser: &Browser, base: &str, bo: u64, doors: &Doors) -> String {
    let dead_letters = browser.dom(&format!("{base}/dead-letters")).await;
    let letter =
        element_containing(&dead_letters, &format!("<a href=\"/members/{bo}\">"), "tr").expect("Bo's dead letter");
    assert!(letter.contains("grant_group") && letter.contains(&format!("data-group=\"{}\"", doors.room)), "{letter}");
    assert!(letter.contains("404 from POST /role_assignments"), "the reason: {letter}");
    assert!(letter.contains(">Bo</a>"), "the member by name: {letter}");
    attribute(letter, "data-sequence").expect("the letter's sequence").to_owned()
}

/// Without the proxy: the login form's session cookie, and the page's CSRF token to drop the
/// letter at `sequence`.
async fn a_session_drops_the_letter_with_the_pages_csrf_token(admin: SocketAddr, sequence: &str) {
    let direct = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let admin = format!("http://{admin}");
    let login = direct.post(format!("{admin}/login")).form(&[("token", support::ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = direct.get(format!("{admin}/dead-letters")).header("cookie", &session).send().await.unwrap();
    let page = page.text().await.unwrap();
    let drop_form = element_containing(&page, &format!("action=\"/dead-letters/{sequence}/drop\""), "form")
        .expect("a drop button for the waiting letter");
    let csrf = drop_form.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let drop_url = format!("{admin}/dead-letters/{sequence}/drop");
    assert_eq!(direct.get(&drop_url).header("cookie", &session).send().await.unwrap().status(), 405);
    let cookie_alone = direct.post(&drop_url).header("cookie", &session).send().await.unwrap();
    assert_eq!(cookie_alone.status(), 403, "a session without the page's CSRF token changes nothing");
    let from_elsewhere = direct.post(&drop_url).header("cookie", &session).header("origin", "https://evil.example");
    assert_eq!(from_elsewhere.form(&[("csrf", csrf.as_str())]).send().await.unwrap().status(), 403);
    let dropped = direct.post(&drop_url).header("cookie", &session).form(&[("csrf", csrf.as_str())]).send().await;
    let dropped = dropped.unwrap();
    assert_eq!(dropped.status(), 303, "{}", dropped.text().await.unwrap_or_default());
    let after = direct.get(format!("{admin}/dead-letters")).header("cookie", &session).send().await.unwrap();
    let after = after.text().await.unwrap();
    let letter = element_containing(&after, &format!("data-sequence=\"{sequence}\""), "tr").unwrap();
    assert!(letter.contains("dropped at") && !letter.contains("<form"), "{letter}");
}
