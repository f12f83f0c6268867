"""A stand-in for the lab ALB's HAProxy stats socket, answering ``show stat`` with rows a test controls.

The header and every row template are real HAProxy 2.6.12 output (the version in the lab's image,
localhost/fumidai-debian12), captured from ``show stat`` on a stats socket with servers in each state:
a server answering 200 (UP, L7OK), answering 500 (DOWN, L7STS), a closed port (DOWN, L4CON), a
listener that never answers (DOWN, L7TOUT, and "* L7TOUT" while the next check runs), one that
closes without answering (DOWN, L7RSP), a server before its first check (UP 1/2, INI), ``disabled``
(MAINT), without ``check`` ("no check"), drained through the admin socket (DRAIN), one check after an
UP server started failing ("UP 1/2", L7STS) and one check after a DOWN server started passing with
rise 3 ("DOWN 1/3", L7OK). Only the proxy (backend) and server names are substituted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,"
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"
    "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,"
    "qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,"
    "check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,"
    "intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,"
    "rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,"
    "agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,"
    "h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,"
    "h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,"
    "h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,"
    "h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,"
)

SERVER_ROWS = {
    "up": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,6,1,,0,,2,0,,0,L7OK,200,0,0,0,0,0,"
        "0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:9001,,http,,,,,,,,0,0,0,,,0"
        ",,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "down_500": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,0,0,,1,6,2,,0,,2,0,,0,L7STS,500,1,0,0,0"
        ",0,0,0,,,,0,0,0,,,,,-1,Internal Server Error,,0,0,0,0,,,,Layer7 wrong status,,2,2,0,,,,127.0.0.1:900"
        "2,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "down_l4con": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,0,0,,1,6,3,,0,,2,0,,0,L4CON,,0,0,0,0,0,"
        "0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:901"
        "0,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "down_l7tout": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,5,5,,1,6,4,,0,,2,0,,0,L7TOUT,,1001,0,0,"
        "0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 timeout,,2,2,0,,,,127.0.0.1:9003,,http,,,,,,,,0,0,0,,,0,"
        ",0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "down_l7tout_checking": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,5,5,,1,6,4,,0,,2,0,,0,* L7TOUT,,1001,0,"
        "0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 timeout,,2,2,0,,,,127.0.0.1:9003,,http,,,,,,,,0,0,0,,,"
        "0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "down_l7rsp": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,6,6,,1,6,5,,0,,2,0,,0,L7RSP,,0,0,0,0,0,"
        "0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 invalid response,,2,2,0,,,,127.0.0.1:9004,,http,,,,,,,,0,0,0"
        ",,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "initial": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,0,0,1,0,,1,6,4,,0,,2,0,,0,INI,,,0,0,0,0,0"
        ",0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Initializing,,2,2,2,,,,127.0.0.1:9003,,http,,,,,,,,0,0,0,,,0,,0,0,0,"
        "0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "maint": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,1,1,,1,6,6,,0,,2,0,,0,,,,0,0,0,0,0,0,,"
        ",,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:9001,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,"
        "0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "no_check": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,1,,,1,6,7,,0,,2,0,,0,,,,0,0,0,0,0,0,,"
        ",,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:9001,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,"
        "0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "drain": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,1,0,0,0,0,0,,1,6,1,,0,,2,0,,0,L7OK,200,0,0,0,0"
        ",0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:9001,,http,,,,,,,,0,0,0,"
        ",,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "going_down": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,1,0,4,0,,1,6,1,,0,,2,0,,0,L7STS,500,0,0,0"
        ",0,0,0,0,,,,0,0,0,,,,,-1,Internal Server Error,,0,0,0,0,,,,Layer7 wrong status,,2,2,2,,,,127.0.0.1:9"
        "002,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
    "going_up": (
        "{backend},{server},0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/3,1,1,0,1,1,4,4,,1,3,1,,0,,2,0,,0,L7OK,200,0,0,"
        "0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,3,2,1,,,,127.0.0.1:9005,,http,,,,,,,,0,0"
        ",0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
    ),
}
FRONTEND_ROW = (
    "{frontend},FRONTEND,,,0,1,9980,1,40,49,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,1,,,,0,1,0,0,0,0,,1,1,1"
    ",,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,1,1,1,1,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,1,1,25,57,0,0,"
)
BACKEND_ROW = (
    "{backend},BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,UP,5,5,0,,0,1,0,,1,6,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0"
    ",0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,5,0,0,0,-,0,0"
    ",0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3,3,133,50,0,0,"
)


def server_row(state: str, backend: str, server: str) -> str:
    """The real row for a server in ``state`` (a key of SERVER_ROWS), renamed."""
    return SERVER_ROWS[state].format(backend=backend, server=server)


def show_stat(backend: str, servers: dict[str, str]) -> str:
    """What ``show stat`` prints for a lab ALB with one listener and one backend of ``servers`` {name: state}."""
    lines = [HEADER, FRONTEND_ROW.format(frontend="listener_80")]
    lines += [server_row(state, backend, server) for server, state in servers.items()]
    lines.append(BACKEND_ROW.format(backend=backend))
    return "\n".join(lines) + "\n\n"


class FakeStatsSocket:
    """A unix socket at ``path`` that answers ``show stat`` with ``show_stat(backend, servers)``.

    ``servers`` may be changed while it runs (``set``, or ``set_after`` a number of requests); every
    request reads it afresh, as HAProxy reports its current view. Anything but ``show stat`` gets
    HAProxy's "Unknown command" answer.
    """

    def __init__(self, path: Path, backend: str, servers: dict[str, str] | None = None):
        self.path = Path(path)
        self.backend = backend
        self._servers = dict(servers or {})
        self._lock = threading.Lock()
        self._later: tuple[int, dict[str, str]] | None = None
        self._closing = False
        self.requests = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set(self, servers: dict[str, str]) -> None:
        with self._lock:
            self._servers = dict(servers)
            self._later = None

    def set_after(self, requests: int, servers: dict[str, str]) -> None:
        """Answer ``requests`` more requests as now, then report ``servers`` (a change HAProxy sees mid-wait)."""
        with self._lock:
            self._later = (self.requests + requests, dict(servers))

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            if self._closing:
                conn.close()
                return
            with conn:
                command = b""
                while not command.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    command += chunk
                with self._lock:
                    if self._later and self.requests >= self._later[0]:
                        self._servers, self._later = self._later[1], None
                    self.requests += 1
                    servers = dict(self._servers)
                if command.strip() == b"show stat":
                    answer = show_stat(self.backend, servers)
                else:
                    answer = "Unknown command. Please enter one of the following commands only :\n\n"
                conn.sendall(answer.encode())

    def close(self) -> None:
        # Closing a unix socket does not wake the accept() blocked on it: a last connection does.
        self._closing = True
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(str(self.path))
        self._thread.join(timeout=5)
        self._sock.close()
        self.path.unlink(missing_ok=True)
