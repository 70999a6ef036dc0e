use super::*;

fn host() -> OcsfHost {
    OcsfHost {
        hostname: "web-1".into(),
        uid: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
    }
}

/// Every golden line OCSF has a class for makes a record with its class,
/// activity and type; the others make none.
#[test]
fn the_golden_lines_map_to_their_classes() {
    let mut seen = 0;
    for row in include_str!("golden.txt").lines() {
        let (name, json) = row.split_once('\t').unwrap();
        // The golden file holds other documents too (the list's).
        let Ok(line) = Line::parse(json) else {
            continue;
        };
        let Some(r) = record(&line, &host()) else {
            assert!(
                !matches!(
                    line,
                    Line::Opened(_) | Line::Closed(_) | Line::Alert(_) | Line::Drift(_)
                ),
                "{name}"
            );
            continue;
        };
        seen += 1;
        let (class, activity) = (
            r["class_uid"].as_u64().unwrap(),
            r["activity_id"].as_u64().unwrap(),
        );
        assert_eq!(
            r["type_uid"].as_u64().unwrap(),
            class * 100 + activity,
            "{name}"
        );
        assert_eq!(r["metadata"]["version"], OCSF_VERSION);
        match &line {
            Line::Opened(p) => {
                assert_eq!((class, activity), (4001, 7), "{name}");
                assert_eq!(r["dst_endpoint"]["port"], p.port);
                assert_eq!(r["connection_info"]["protocol_name"], p.proto.as_str());
                assert_eq!(r["actor"]["process"]["pid"], p.pid);
                assert_eq!(r["time"], p.ts.timestamp_millis());
            }
            Line::Closed(_) => assert_eq!((class, activity), (4001, 2), "{name}"),
            Line::ExposureChanged(_) => assert_eq!((class, activity), (4001, 99), "{name}"),
            Line::Alert(_) => assert_eq!(
                (class, r["is_alert"].as_bool()),
                (2004, Some(true)),
                "{name}"
            ),
            Line::Drift(_) => assert_eq!(class, 2004, "{name}"),
            _ => unreachable!(),
        }
        assert_eq!(r["device"]["hostname"], "web-1");
    }
    assert!(seen >= 5, "{seen}");
}
