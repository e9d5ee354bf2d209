//! Table tests for [`TemplateMapper`], rendered like the FHIR table.

use super::fhir_tests::render;
use super::{RequestView, RouteTemplate, TemplateMapper, TemplateProblem};

fn template(
    path: &str,
    methods: &[&str],
    action: Option<&str>,
    resource_type: &str,
) -> RouteTemplate {
    RouteTemplate {
        name: None,
        path: path.to_owned(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        action: action.map(str::to_owned),
        resource_type: resource_type.to_owned(),
        patient_query: None,
    }
}

fn mapper() -> TemplateMapper {
    let templates = vec![
        RouteTemplate {
            name: Some("chart".to_owned()),
            ..template("/charts/{patient}", &["GET"], None, "Chart")
        },
        template("/charts/{patient}/notes/{id}", &[], None, "Note"),
        template(
            "/charts/{patient}/notes/{id}",
            &["post"],
            Some("operation"),
            "NoteAction",
        ),
        template("/charts/{patient}/{*rest}", &["GET"], None, "ChartPart"),
        template("/charts/archive", &["GET"], Some("search"), "Archive"),
        RouteTemplate {
            patient_query: Some("mrn".to_owned()),
            ..template("/labs", &["GET", "POST"], None, "Lab")
        },
        RouteTemplate {
            patient_query: Some("pid".to_owned()),
            ..template("/visits/{patient}", &[], None, "Visit")
        },
        template("/static/{*rest}", &["GET"], None, "Static"),
        template("/", &["GET"], None, "Home"),
        template(
            "/reports/{year}/{month}",
            &["GET"],
            Some("export"),
            "Report",
        ),
    ];
    match TemplateMapper::new(templates) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

#[rustfmt::skip]
const ROWS: &[(&str, &str, Option<&str>, &str)] = &[
    ("GET", "/charts/123", None, "read Chart p=123 (chart)"),
    // HEAD is served by the GET template, as a read.
    ("HEAD", "/charts/123", None, "read Chart p=123 (chart)"),
    ("POST", "/charts/123", None, "unmapped:no-template"),
    ("GET", "/charts/archive", None, "search Archive (/charts/archive)"),
    ("GET", "/charts/123/notes/9", None, "read Note/9 p=123 (/charts/{patient}/notes/{id})"),
    ("PUT", "/charts/123/notes/9", None, "update Note/9 p=123 (/charts/{patient}/notes/{id})"),
    ("PATCH", "/charts/123/notes/9", None, "update Note/9 p=123 (/charts/{patient}/notes/{id})"),
    ("DELETE", "/charts/123/notes/9", None, "delete Note/9 p=123 (/charts/{patient}/notes/{id})"),
    ("POST", "/charts/123/notes/9", None, "operation NoteAction/9 p=123 (/charts/{patient}/notes/{id})"),
    ("OPTIONS", "/charts/123/notes/9", None, "unmapped:method-not-supported"),
    ("GET", "/charts/123/meds", None, "read ChartPart p=123 (/charts/{patient}/{*rest})"),
    ("GET", "/charts/123/notes", None, "read ChartPart p=123 (/charts/{patient}/{*rest})"),
    ("GET", "/charts/123/notes/9/x", None, "read ChartPart p=123 (/charts/{patient}/{*rest})"),
    ("GET", "/charts/123/", None, "read ChartPart p=123 (/charts/{patient}/{*rest})"),
    ("GET", "/Charts/123", None, "unmapped:no-template"),
    ("GET", "/charts", None, "unmapped:no-template"),
    ("GET", "/charts/", None, "unmapped:no-template"),
    ("GET", "/charts/a%2Fb", None, "bad"),
    ("GET", "/charts/a\u{1}b", None, "bad"),
    ("GET", "/labs", Some("mrn=42"), "read Lab p=42 (/labs)"),
    ("GET", "/labs", Some("mrn=MRN%2042&x=1"), "read Lab p=MRN 42 (/labs)"),
    ("GET", "/labs", Some("mrn=1&mrn=2"), "bad"),
    ("GET", "/labs", Some("mrn="), "bad"),
    ("GET", "/labs", Some("mrn=%0A"), "bad"),
    ("GET", "/labs", Some("mrnx=1"), "read Lab (/labs)"),
    ("GET", "/labs", None, "read Lab (/labs)"),
    ("POST", "/labs", Some("mrn=7"), "create Lab p=7 (/labs)"),
    ("DELETE", "/labs", None, "unmapped:no-template"),
    ("GET", "/visits/5", Some("pid=5"), "read Visit p=5 (/visits/{patient})"),
    ("GET", "/visits/5", Some("pid=6"), "read Visit p=5 (/visits/{patient}) | read Visit p=6 (/visits/{patient})"),
    ("GET", "/static/app.js", None, "read Static (/static/{*rest})"),
    ("GET", "/static", None, "read Static (/static/{*rest})"),
    ("GET", "/", None, "read Home (/)"),
    ("GET", "/reports/2024/05", None, "export Report (/reports/{year}/{month})"),
    ("GET", "/reports/2024", None, "unmapped:no-template"),
    ("GET", "/unknown", None, "unmapped:no-template"),
];

#[test]
fn template_table() {
    let mapper = mapper();
    for (method, path, query, expected) in ROWS {
        let req = RequestView {
            method,
            path,
            query: *query,
            content_type: None,
            body: None,
            if_none_exist: None,
            stored: None,
        };
        assert_eq!(
            render(&mapper.map(&req)),
            *expected,
            "{method} {path} {query:?}"
        );
    }
}

#[test]
fn most_specific_wins_regardless_of_order() {
    let forward = vec![
        template("/a/{*rest}", &[], None, "Rest"),
        template("/a/{x}", &[], None, "Capture"),
        template("/a/b", &[], None, "Literal"),
    ];
    let mut reversed = forward.clone();
    reversed.reverse();
    for templates in [forward, reversed] {
        let m = TemplateMapper::new(templates)
            .map_err(|e| e.to_string())
            .unwrap();
        let map = |path| {
            render(&m.map(&RequestView {
                method: "GET",
                path,
                query: None,
                content_type: None,
                body: None,
                if_none_exist: None,
                stored: None,
            }))
        };
        assert_eq!(map("/a/b"), "read Literal (/a/b)");
        assert_eq!(map("/a/c"), "read Capture (/a/{x})");
        assert_eq!(map("/a/c/d"), "read Rest (/a/{*rest})");
    }
}

#[test]
fn invalid_templates_report_every_problem() {
    let templates = vec![
        template("charts", &[], None, "X"),
        template("/a//b", &[], None, "X"),
        template("/a/{id", &[], None, "X"),
        template("/a/x{id}", &[], None, "X"),
        template("/a/{}", &[], None, "X"),
        template("/a/{id}/{id}", &[], None, "X"),
        template("/a/{*rest}/b", &[], None, "X"),
        template("/a", &[], Some("fan_out"), "X"),
        template("/a", &["G ET"], None, "X"),
        template("/a", &[], None, ""),
        RouteTemplate {
            patient_query: Some(String::new()),
            ..template("/a", &[], None, "X")
        },
        template("/ok/{patient}", &[], Some("read"), "X"),
    ];
    let err = TemplateMapper::new(templates)
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    let expected = vec![
        TemplateProblem::PathNotAbsolute { index: 0 },
        TemplateProblem::EmptySegment { index: 1 },
        TemplateProblem::BadBrace {
            index: 2,
            segment: "{id".to_owned(),
        },
        TemplateProblem::BadBrace {
            index: 3,
            segment: "x{id}".to_owned(),
        },
        TemplateProblem::BadCaptureName {
            index: 4,
            name: String::new(),
        },
        TemplateProblem::DuplicateCapture {
            index: 5,
            name: "id".to_owned(),
        },
        TemplateProblem::RestNotLast {
            index: 6,
            name: "rest".to_owned(),
        },
        TemplateProblem::UnknownAction {
            index: 7,
            action: "fan_out".to_owned(),
        },
        TemplateProblem::BadMethod {
            index: 8,
            method: "G ET".to_owned(),
        },
        TemplateProblem::EmptyResourceType { index: 9 },
        TemplateProblem::EmptyPatientQuery { index: 10 },
    ];
    assert_eq!(err, expected);
}

#[test]
fn templates_deserialize_from_config() {
    let t: RouteTemplate = serde_json::from_str(
        r#"{"path":"/charts/{patient}","methods":["GET"],"resource_type":"Chart"}"#,
    )
    .unwrap();
    assert_eq!(t, template("/charts/{patient}", &["GET"], None, "Chart"));
    assert!(
        serde_json::from_str::<RouteTemplate>(r#"{"path":"/","resource_type":"X","bogus":1}"#)
            .is_err()
    );
}
