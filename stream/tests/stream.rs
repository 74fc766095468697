//! The servers in one process over real sockets: a build not started yet at every layer,
//! back-pressure (a stalled watcher and a slow one), and graceful shutdown.
//! End-to-end tests with a real job and real clients are in `tests/tests/stream.rs`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sluice_executor::registry::BuildRegistry;
use sluice_stream::locate::{Executor, ExecutorsFile};
use sluice_stream::{
    ConsoleState, FingerConfig, FingerGateway, FingerServer, GatewayConfig, LogWatcher,
    StreamRouter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const UUID: &str = "0123456789abcdef0123456789abcdef";

struct Servers {
    work_root: tempfile::TempDir,
    registry: BuildRegistry,
    finger: SocketAddr,
    gateway: SocketAddr,
    web: SocketAddr,
    stop_finger: Option<oneshot::Sender<()>>,
    finger_task: Option<tokio::task::JoinHandle<()>>,
}

async fn start() -> Servers {
    let work_root = tempfile::tempdir().unwrap();
    let registry = BuildRegistry::new();
    let finger = FingerServer::new(
        FingerConfig {
            work_root: work_root.path().to_path_buf(),
            max_connections: 4096,
            tls: None,
        },
        registry.clone(),
        LogWatcher::new().unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let finger_addr = listener.local_addr().unwrap();
    let (stop_finger, stopped) = oneshot::channel::<()>();
    let finger_task = tokio::spawn(finger.run(listener, async move {
        let _ = stopped.await;
    }));
    let file = ExecutorsFile {
        executors: vec![Executor {
            name: "ze".into(),
            host: "127.0.0.1".into(),
            finger_port: finger_addr.port(),
            zone: None,
        }],
        gateways: Vec::new(),
    };
    let router = StreamRouter::from_file(file, None, None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let gw = FingerGateway::new(
        GatewayConfig {
            max_connections: 4096,
            tls: None,
        },
        router.clone(),
    );
    tokio::spawn(gw.run(listener, std::future::pending::<()>()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    tokio::spawn(sluice_stream::web::serve(
        listener,
        ConsoleState::new(router),
        std::future::pending(),
    ));
    Servers {
        work_root,
        registry,
        finger: finger_addr,
        gateway,
        web,
        stop_finger: Some(stop_finger),
        finger_task: Some(finger_task),
    }
}

impl Servers {
    fn log_path(&self) -> PathBuf {
        self.work_root
            .path()
            .join(UUID)
            .join("work/logs/job-output.txt")
    }

    fn create_log(&self, text: &str) -> std::fs::File {
        let path = self.log_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }
}

async fn request(addr: SocketAddr, line: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(line.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

async fn ws_close(web: SocketAddr, first: &str) -> (u16, String) {
    let url = format!("ws://{web}/api/tenant/t/console-stream");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(first)).await.unwrap();
    while let Some(message) = socket.next().await {
        if let Message::Close(Some(frame)) = message.unwrap() {
            return (u16::from(frame.code), frame.reason.to_string());
        }
    }
    panic!("no close frame");
}

fn first(uuid: &str) -> String {
    format!(r#"{{"uuid": "{uuid}", "logfile": "console.log"}}"#)
}

#[tokio::test]
async fn a_build_not_started_yet_gets_zuul_errors_at_every_layer() {
    let servers = start().await;
    // Registered, but its log does not exist yet.
    let _guard = servers.registry.register(UUID, servers.log_path());
    assert_eq!(
        request(servers.finger, &format!("{UUID}\n")).await,
        format!("Log not found for build ID {UUID}")
    );
    assert_eq!(
        request(servers.finger, &format!("?{UUID}\n")).await,
        "pending\n"
    );
    assert_eq!(
        request(servers.gateway, &format!("{UUID}\n")).await,
        "Build did not start yet"
    );
    assert_eq!(
        ws_close(servers.web, &first(UUID)).await,
        (4011, "Build did not start yet".into())
    );
}

/// Reads until `n` bytes or EOF.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < n {
        let k = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("stream stalled")
            .unwrap();
        if k == 0 {
            break;
        }
        out.extend_from_slice(&buf[..k]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_slows_nobody_and_catches_up_complete_and_in_order() {
    let servers = start().await;
    let guard = servers.registry.register(UUID, servers.log_path());
    let mut file = servers.create_log("start\n");
    let mut stalled = TcpStream::connect(servers.gateway).await.unwrap();
    stalled
        .write_all(format!("{UUID}\n").as_bytes())
        .await
        .unwrap();
    let mut fast = TcpStream::connect(servers.gateway).await.unwrap();
    fast.write_all(format!("{UUID}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_n(&mut fast, 6).await, b"start\n");

    // 200,000 lines (about 8 MB): far more than every socket buffer on the way.
    let writer = tokio::task::spawn_blocking(move || {
        let mut expected = String::from("start\n");
        for i in 0..200_000 {
            let line = format!("line {i:07} of the build's output\n");
            file.write_all(line.as_bytes()).unwrap();
            expected.push_str(&line);
        }
        expected
    });
    let expected = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the build's writes were slowed down")
        .unwrap();
    // The fast watcher gets everything while the stalled one has read nothing.
    let got = read_n(&mut fast, expected.len() - 6).await;
    assert!(
        got == expected.as_bytes()[6..],
        "fast watcher: wrong stream"
    );

    drop(guard);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), fast.read_to_end(&mut rest))
        .await
        .expect("stream not closed at the end of the build")
        .unwrap();
    assert!(rest.is_empty());
    // Now the stalled watcher reads: it catches up from the file, then the stream closes.
    let mut caught_up = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut caught_up))
        .await
        .expect("stalled watcher never caught up")
        .unwrap();
    assert!(
        caught_up == expected.as_bytes(),
        "stalled watcher: wrong stream"
    );
}

#[tokio::test]
async fn shutdown_ends_streams_at_a_line_boundary_and_waits_for_them() {
    let mut servers = start().await;
    let _guard = servers.registry.register(UUID, servers.log_path());
    let mut file = servers.create_log("one\n");
    let mut watcher = TcpStream::connect(servers.finger).await.unwrap();
    watcher
        .write_all(format!("{UUID}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_n(&mut watcher, 4).await, b"one\n");
    file.write_all(b"two\nthr").unwrap();
    assert_eq!(read_n(&mut watcher, 4).await, b"two\n");
    let _ = servers.stop_finger.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(10), servers.finger_task.take().unwrap())
        .await
        .expect("finger server did not drain")
        .unwrap();
    let mut rest = Vec::new();
    watcher.read_to_end(&mut rest).await.unwrap();
    // The half-written line `thr` is not sent.
    assert_eq!(rest, b"");
    assert!(TcpStream::connect(servers.finger).await.is_err());
}

#[tokio::test]
async fn the_web_serves_a_finished_build_log_and_streams_it_over_websocket() {
    let servers = start().await;
    servers.create_log("a\nb\n");
    let mut http = TcpStream::connect(servers.web).await.unwrap();
    http.write_all(
        format!(
            "GET /api/tenant/t/build/{UUID}/log HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    http.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("text/plain"), "{reply}");
    assert!(reply.contains("a\nb\n"), "{reply}");

    let url = format!("ws://{}/api/tenant/t/console-stream", servers.web);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(first(UUID))).await.unwrap();
    let mut text = String::new();
    let mut close = None;
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Text(t) => text.push_str(&t),
            Message::Close(frame) => {
                close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(text, "a\nb\n");
    assert_eq!(close, Some((1000, "No more data".into())));
}

#[tokio::test]
async fn web_shutdown_closes_websockets_with_1001_and_returns() {
    let servers = start().await;
    let _guard = servers.registry.register(UUID, servers.log_path());
    let _file = servers.create_log("line\n");
    let file = ExecutorsFile {
        executors: vec![Executor {
            name: "ze".into(),
            host: "127.0.0.1".into(),
            finger_port: servers.finger.port(),
            zone: None,
        }],
        gateways: Vec::new(),
    };
    let state = ConsoleState::new(StreamRouter::from_file(file, None, None));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(sluice_stream::web::serve(
        listener,
        state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("ws://{web}/api/tenant/t/console-stream");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(first(UUID))).await.unwrap();
    match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => assert_eq!(text.as_str(), "line\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(state.n_sessions(), 1);
    let _ = stop.send(());
    let mut close = None;
    while let Some(message) = socket.next().await {
        if let Ok(Message::Close(frame)) = message {
            close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    assert_eq!(close, Some((1001, "Server shutting down".into())));
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("web did not return after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(state.n_sessions(), 0);
}
