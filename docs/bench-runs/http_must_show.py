"""Issue 17 must-show against any mdrelay binary: a client trickling its request head 1 byte per
100 ms, 500 idle connections, then the time /health takes for a new client and the time the
relay takes to exit after SIGTERM. Usage: python3 docs/bench-runs/http_must_show.py BINARY
[--set KEY=VALUE ...]  (run from anywhere; the relay runs in the repository root, demo config)."""
import socket, subprocess, sys, threading, time, os, signal, re, tempfile
binary = sys.argv[1]
rt = tempfile.mkdtemp()
env = dict(os.environ, RUST_LOG="info", XDG_RUNTIME_DIR=rt)
env.pop("NO_COLOR", None)
p = subprocess.Popen([binary, "run", "--set", 'http.listen="127.0.0.1:0"'] + sys.argv[2:],
                     cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
addr = None
def pump():
    global addr
    for line in p.stderr:
        m = re.search(r"http listening.*addr=(\S+)", line)
        if m: addr = m.group(1)
threading.Thread(target=pump, daemon=True).start()
t0=time.time()
while addr is None and p.poll() is None and time.time()-t0<20: time.sleep(0.05)
print("addr", addr, p.poll())
host, port = addr.rsplit(":", 1); port = int(port)
stop = False
def trickle():
    head = b"GET /health HTTP/1.1\r\nX-Pad: " + b"a"*4000 + b"\r\n\r\n"
    while not stop:
        try:
            s = socket.create_connection((host, port))
            for b in head:
                if stop: break
                s.send(bytes([b])); time.sleep(0.1)
        except OSError: time.sleep(0.1)
threading.Thread(target=trickle, daemon=True).start()
idle = []
for i in range(500):
    try: idle.append(socket.create_connection((host, port), timeout=0.1))
    except OSError: pass
print("idle connected:", len(idle))
time.sleep(0.2)
t = time.time()
try:
    s = socket.create_connection((host, port), timeout=10); s.settimeout(10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        c = s.recv(65536)
        if not c: break
        data += c
    print("health: %.3f s, %r" % (time.time()-t, data.split(b"\r\n")[0]))
except OSError as e:
    print("health: no answer after %.1f s (%s)" % (time.time()-t, e))
p.send_signal(signal.SIGTERM); t = time.time()
try:
    rc = p.wait(timeout=30); print("SIGTERM -> exit %d in %.2f s" % (rc, time.time()-t))
except subprocess.TimeoutExpired:
    print("SIGTERM -> still running after 30 s"); p.kill()
stop = True
