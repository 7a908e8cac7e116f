//! The status page in a real headless browser: `doorsync run` against simulated Kisi and
//! Nexudus, a member with bookings made in Nexudus, and an operator who opens the overview,
//! follows the member's link to their timeline, and looks at the dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use doorsync_kisi_sim::{Fault, FaultRule};
use doorsync_nexudus_sim::SimEntity;
use serde_json::json;
use support::{Browser, Site, attribute, element_containing, minutes_from, nexudus_time, now, wait_until};

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
    let mappings = format!(
        "[[mapping]]\nresource = {room}\nkisi_group = {}\n\n[[mapping]]\nresource = {studio}\nkisi_group = {}\n",
        room_doors.0, studio_doors.0
    );
    let doorsync = site.run_doorsync(&mappings).await;
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
    for path in ["/", &format!("/members/{ada}"), "/dead-letters"] {
        assert_eq!(doorsync.status_without_token(path).await, 401, "{path} without the token");
    }
    let proxy = support::token_proxy(doorsync.admin).await;
    let base = format!("http://{proxy}");

    let overview = browser.dom(&format!("{base}/")).await;
    assert!(overview.contains("<title>Status · doorsync</title>"), "{overview}");
    assert!(!overview.to_lowercase().contains("<lovelace"), "the name must not become markup: {overview}");
    let row = element_containing(&overview, ADA_ESCAPED, "tr").expect("a row with Ada's name");
    let link = attribute(row, "href").expect("a link in Ada's row");
    assert_eq!(link, format!("/members/{ada}"));
    let now_cell = element_containing(row, "class=\"now\"", "td").unwrap();
    assert!(now_cell.contains(&format!("data-group=\"{}\"", room_doors.0)), "in the room's group now: {row}");
    let next_cell = element_containing(row, "class=\"next\"", "td").unwrap();
    assert!(next_cell.contains(&format!("data-group=\"{}\"", studio_doors.0)), "in the studio's group next: {row}");
    assert!(row.contains("ada@example.com"));
    let bo_row = element_containing(&overview, &format!("<tr data-member=\"{bo}\""), "tr").expect("Bo's row");
    assert!(bo_row.contains(">Bo</a>"));
    let writer = element_containing(&overview, "id=\"writer\"", "section").unwrap();
    assert!(writer.contains(">active<"), "{writer}");
    assert!(writer.contains("1 in the dead-letter stream") && writer.contains(">succeeded<"), "{writer}");
    let ingest = element_containing(&overview, "id=\"ingest\"", "section").unwrap();
    assert!(ingest.contains(" accepted, ") && !ingest.contains("<dd>0 accepted"), "webhooks arrived: {ingest}");
    assert!(ingest.contains(">booking_changed<"), "events by type: {ingest}");

    let timeline = browser.dom(&format!("{base}{link}")).await;
    assert!(timeline.contains(&format!("<h1>{ADA_ESCAPED}")), "{timeline}");
    assert!(!timeline.to_lowercase().contains("<lovelace"));
    let svg = element_containing(&timeline, "<svg class=\"timeline\"", "svg").expect("the timeline picture");
    assert!(svg.contains("Times in UTC") && svg.contains("class=\"now\""));
    let room_lane = element_containing(svg, &format!("data-group=\"{}\"", room_doors.0), "g").unwrap();
    for drawn in [
        format!("data-label=\"booking {under_way} · resource {room}\""),
        "class=\"bar access\"".to_owned(),
        "class=\"bar booking\"".to_owned(),
        "class=\"bar kisi\"".to_owned(),
    ] {
        assert!(svg.contains(&drawn), "{drawn} in the picture: {svg}");
    }
    assert!(room_lane.contains("Kisi group"), "{room_lane}");
    assert!(svg.contains(&format!("data-label=\"booking {later_today} · resource {studio}\"")));
    assert!(svg.contains(&format!("data-group=\"{}\"", studio_doors.0)));
    let idle = element_containing(&timeline, "class=\"idle\"", "table").expect("what grants nothing");
    assert!(idle.contains(&format!("booking {tentative} · resource {room}")) && idle.contains("tentative booking"));
    assert!(idle.contains(&format!("booking {unmapped} · resource {booth}")) && idle.contains("no Kisi group"));
    let kisi_side = element_containing(&timeline, "class=\"assignments\"", "table").expect("Kisi's assignments");
    assert!(
        kisi_side.contains(&format!("group {}", room_doors.0))
            && kisi_side.contains(&format!("group {}", studio_doors.0))
    );
    let history = element_containing(&timeline, "class=\"history\"", "table").expect("the history");
    assert!(history.contains(&format!("booking {under_way} of resource {room}")), "{history}");
    assert!(history.contains(&format!("Kisi holds group {}", room_doors.0)), "{history}");

    let dead_letters = browser.dom(&format!("{base}/dead-letters")).await;
    let letter =
        element_containing(&dead_letters, &format!("<a href=\"/members/{bo}\">"), "tr").expect("Bo's dead letter");
    assert!(letter.contains("grant_group") && letter.contains(&format!("group {}", room_doors.0)), "{letter}");
    assert!(letter.contains("404 from POST /role_assignments"), "the reason: {letter}");
    let sequence = attribute(letter, "data-sequence").expect("the letter's sequence").to_owned();

    // Without a proxy: the login form's session cookie, and the page's CSRF token to drop it.
    let direct = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let admin = format!("http://{}", doorsync.admin);
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

    let log = doorsync.log();
    assert!(
        !log.contains("ada@example.com") && !log.contains("Lovelace"),
        "names and emails stay out of the log: {log}"
    );
    let exit = doorsync.stop().await;
    assert!(exit.success(), "doorsync exits cleanly on SIGTERM: {exit}");
    site.stop().await;
}
