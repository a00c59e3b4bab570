//! `cascade download` against hostile and broken hosts on loopback: redirect chains and loops,
//! HTTP errors, `X-Robots-Tag` opt-outs, bodies that drip, stop short or never end, pages that
//! are not images, corrupt and unusual images, and a decompression bomb's header. Each is a
//! counted failure with its reason or a correct success, the process never crashes, and its
//! peak memory stays bounded while a 64 MiB body streams in.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cascade_stages::wat::{Pair, PairWriter};
use cascade_tests::{cascade_binary, python_with_data_libraries, workspace_root};
use serde_json::Value;

fn image(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/data/images").join(name)).unwrap()
}

/// A PNG whose header declares `width` × `height` pixels, with (almost) no pixel data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    // An empty zlib stream stands in for the 30 GB of pixels.
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), (b"IEND", &[])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let chunk = [kind, data].concat();
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

/// Answers one request for `path`.
fn serve(mut stream: TcpStream, path: &str) -> std::io::Result<()> {
    let jpeg = ("Content-Type", "image/jpeg");
    match path {
        "/ok.jpg" => respond(&mut stream, "200 OK", &[jpeg], &image("photo_320x180.jpg")),
        "/cmyk.jpg" => respond(&mut stream, "200 OK", &[jpeg], &image("cmyk_320x180.jpg")),
        "/exif-rotated.jpg" => respond(&mut stream, "200 OK", &[jpeg], &image("exif_rotated_320x180.jpg")),
        "/rgba.png" => respond(&mut stream, "200 OK", &[("Content-Type", "image/png")], &image("rgba_200x100.png")),
        "/bomb.png" => respond(&mut stream, "200 OK", &[("Content-Type", "image/png")], &png_header(100_000, 100_000)),
        "/corrupt.jpg" => {
            let mut bytes = image("photo_320x180.jpg");
            bytes.truncate(300);
            bytes.extend(std::iter::repeat_n(0x5a, 2000));
            respond(&mut stream, "200 OK", &[jpeg], &bytes)
        }
        "/page.html" => respond(&mut stream, "200 OK", &[("Content-Type", "text/html")], b"<html><body>no image</body></html>"),
        "/missing.jpg" => respond(&mut stream, "404 Not Found", &[], b"gone"),
        "/broken.jpg" => respond(&mut stream, "500 Internal Server Error", &[], b"oops"),
        "/loop.jpg" => respond(&mut stream, "302 Found", &[("Location", "/loop.jpg")], b""),
        "/robots/noai.jpg" => respond(&mut stream, "200 OK", &[jpeg, ("X-Robots-Tag", "noai")], &image("photo_320x180.jpg")),
        "/robots/several.jpg" => respond(
            &mut stream,
            "200 OK",
            &[jpeg, ("X-Robots-Tag", "nofollow"), ("X-Robots-Tag", "NoImageIndex")],
            &image("photo_320x180.jpg"),
        ),
        "/robots/other-bot.jpg" => {
            respond(&mut stream, "200 OK", &[jpeg, ("X-Robots-Tag", "otherbot: noai")], &image("photo_320x180.jpg"))
        }
        "/robots/our-bot.jpg" => {
            respond(&mut stream, "200 OK", &[jpeg, ("X-Robots-Tag", "cascadetest: noimageai")], &image("photo_320x180.jpg"))
        }
        "/robots/nofollow.jpg" => {
            respond(&mut stream, "200 OK", &[jpeg, ("X-Robots-Tag", "nofollow")], &image("photo_320x180.jpg"))
        }
        "/truncated.jpg" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 10000\r\n\r\n")?;
            stream.write_all(&image("photo_320x180.jpg")[..500])
        }
        "/drip.jpg" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")?;
            for byte in image("photo_320x180.jpg") {
                stream.write_all(&[byte])?;
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        }
        "/stall.jpg" => {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        "/endless.jpg" => {
            // 64 MiB, no length: only the body cap stops it.
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![0xffu8; 64 << 10];
            for _ in 0..1024 {
                stream.write_all(&chunk)?;
            }
            Ok(())
        }
        redirect if redirect.starts_with("/hop/") => {
            let left: u32 = redirect["/hop/".len()..].parse().unwrap_or(0);
            let next = if left == 0 { "/ok.jpg".to_owned() } else { format!("/hop/{}", left - 1) };
            respond(&mut stream, "302 Found", &[("Location", &next)], b"")
        }
        _ => respond(&mut stream, "404 Not Found", &[], b""),
    }
}

/// Starts the fault server; returns its base URL.
fn start_fault_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                // A client that gave up closes the socket: the write error is expected.
                let _ = serve(stream, &path);
            });
        }
    });
    base
}

/// Reads the shard's parquet rows with pyarrow, keyed by URL path.
const READ_ROWS: &str = r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(json.dumps(rows))
"#;

#[test]
fn fault_hosts_are_counted_failures_or_correct_successes() {
    let base = start_fault_server();
    let paths = [
        "/ok.jpg", "/hop/3", "/loop.jpg", "/hop/12", "/missing.jpg", "/broken.jpg", "/robots/noai.jpg",
        "/robots/several.jpg", "/robots/other-bot.jpg", "/robots/our-bot.jpg", "/robots/nofollow.jpg",
        "/drip.jpg", "/stall.jpg", "/truncated.jpg", "/endless.jpg", "/page.html", "/corrupt.jpg", "/rgba.png",
        "/cmyk.jpg", "/exif-rotated.jpg", "/bomb.png",
    ];
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("faults.parquet");
    let mut writer = PairWriter::create(&pairs, 100).unwrap();
    writer
        .write(
            paths
                .iter()
                .map(|path| Pair {
                    uid: path.to_string(),
                    url: format!("{base}{path}"),
                    alt: format!("caption of {path}"),
                    cc_filename: "faults".to_owned(),
                    page_url: base.clone(),
                })
                .collect(),
        )
        .unwrap();
    writer.finish().unwrap();

    let out = dir.path().join("out");
    let settings = r#"{"timeout": 1, "deadline": 3, "max-body-bytes": 1048576, "user-agent-token": "CascadeTest", "concurrency": 64}"#;
    let child = Command::new(cascade_binary())
        .args(["download", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--settings", settings])
        .env("CASCADE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peak_rss = peak_rss_until_exit(child.id());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The 64 MiB body is cut at 1 MiB while it streams: the process never holds it.
    assert!(peak_rss < 200 << 20, "peak RSS {} MiB", peak_rss >> 20);

    let rows = read_rows(&out.join("faults/00000.parquet"));
    let outcome = |path: &str| -> (String, String) {
        let row = &rows[path];
        (row["status"].as_str().unwrap().to_owned(), row["error_message"].as_str().unwrap_or("").to_owned())
    };
    let success = |path: &str| {
        let (status, message) = outcome(path);
        assert_eq!(status, "success", "{path}: {message}");
    };
    let failure = |path: &str, status: &str, message: &str| {
        let (got_status, got_message) = outcome(path);
        assert_eq!(got_status, status, "{path}: {got_message}");
        assert!(got_message.contains(message), "{path}: {got_message:?} lacks {message:?}");
    };
    success("/ok.jpg");
    success("/hop/3");
    failure("/loop.jpg", "failed_to_download", "redirect");
    failure("/hop/12", "failed_to_download", "redirect");
    failure("/missing.jpg", "failed_to_download", "HTTP Error 404: Not Found");
    failure("/broken.jpg", "failed_to_download", "HTTP Error 500: Internal Server Error");
    let robots = "Use of image disallowed by X-Robots-Tag directive";
    failure("/robots/noai.jpg", "failed_to_download", robots);
    failure("/robots/several.jpg", "failed_to_download", robots);
    success("/robots/other-bot.jpg");
    failure("/robots/our-bot.jpg", "failed_to_download", robots);
    success("/robots/nofollow.jpg");
    failure("/drip.jpg", "failed_to_download", "timed out");
    failure("/stall.jpg", "failed_to_download", "timed out");
    failure("/truncated.jpg", "failed_to_download", "");
    failure("/endless.jpg", "failed_to_download", "1048576");
    failure("/page.html", "failed_to_resize", "Image decoding error");
    failure("/corrupt.jpg", "failed_to_resize", "");
    failure("/bomb.png", "failed_to_resize", "100000");
    for path in ["/rgba.png", "/cmyk.jpg", "/exif-rotated.jpg"] {
        success(path);
    }
    // EXIF orientation is not applied (as img2dataset): the stored size is the original size,
    // and the camera make is in the exif field.
    let rotated = &rows["/exif-rotated.jpg"];
    assert_eq!((rotated["original_width"].as_i64(), rotated["original_height"].as_i64()), (Some(320), Some(180)));
    assert!(rotated["exif"].as_str().unwrap().contains("Cascade Test Camera"), "{}", rotated["exif"]);
    let sums: BTreeMap<&str, usize> = ["success", "failed_to_download", "failed_to_resize"]
        .into_iter()
        .map(|s| (s, rows.values().filter(|r| r["status"] == s).count()))
        .collect();
    assert_eq!(sums.values().sum::<usize>(), paths.len());

    // Transparent pixels became white, opaque red stayed red (border mode: 256×128 centred).
    let tar = std::fs::read(out.join("faults/00000.tar")).unwrap();
    let key = rows["/rgba.png"]["key"].as_str().unwrap().to_owned();
    let jpeg = tar_member(&tar, &format!("{key}.jpg"));
    let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (256, 256));
    let [r, g, b] = decoded.get_pixel(200, 128).0;
    assert!(r > 235 && g > 235 && b > 235, "transparent → white, got {r},{g},{b}");
    let [r, g, b] = decoded.get_pixel(60, 128).0;
    assert!(r > 200 && g < 60 && b < 60, "opaque red stays red, got {r},{g},{b}");
    let [r, g, b] = decoded.get_pixel(60, 10).0;
    assert!(r > 235 && g > 235 && b > 235, "border padding is white, got {r},{g},{b}");
}

fn read_rows(parquet: &Path) -> BTreeMap<String, Value> {
    let output = Command::new(python_with_data_libraries()).args(["-c", READ_ROWS]).arg(parquet).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter().map(|row| (row["uid"].as_str().unwrap().to_owned(), row)).collect()
}

fn tar_member(tar: &[u8], name: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{name} is not in the tar");
}

/// Polls `/proc/PID/status` until the process exits; returns its peak resident set (VmHWM).
fn peak_rss_until_exit(pid: u32) -> u64 {
    let mut peak = 0;
    while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if status.contains("State:\tZ") {
            break;
        }
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            peak = peak.max(kib << 10);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}
