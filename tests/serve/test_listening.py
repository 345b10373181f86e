"""What `convnet serve` says of where the page is: a URL for this machine, and for any
address but a loopback one, the URLs others can use and a warning that anyone on the
network can use the page."""

from __future__ import annotations

from tests.helpers.bounded_server import untrained_models


def test_the_host_0_0_0_0_says_where_the_page_is_and_warns(monkeypatch, capsys, tmp_path):
    """`convnet serve --host 0.0.0.0`: the URL on this machine, the addresses others can use
    (from the default route and the host name; none on a machine without a network), and
    a warning that anyone on the network can use the page."""
    from convnet.cli import main
    from convnet.commands import serve as serve_command
    from convnet.serve import server as server_module

    ran = []
    monkeypatch.setattr(serve_command, "machine_addresses", lambda family: ["192.168.1.20"])
    monkeypatch.setattr("convnet.serve.models.prepare_models", lambda *a, **k: untrained_models())
    monkeypatch.setattr(server_module.Server, "run", lambda self, sockets: ran.append(sockets))
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--runs-dir", str(tmp_path)]) == 0
    ran[0][0].close()
    lines = capsys.readouterr().err.splitlines()
    opened = next(line for line in lines if line.startswith("Open http://127.0.0.1:"))
    port = opened.split(":")[2].split("/")[0]
    assert f"From other devices on your network: http://192.168.1.20:{port}/" in lines
    warning = next(line for line in lines if line.startswith("Warning: with --host 0.0.0.0"))
    assert "anyone who can reach this machine" in warning and "Leave --host out" in warning
    local = main(["serve", "--port", "0", "--runs-dir", str(tmp_path)])
    ran[1][0].close()
    assert local == 0 and "anyone" not in capsys.readouterr().err


def test_what_each_kind_of_address_says(monkeypatch):
    from convnet.commands import serve as serve_command
    from convnet.commands.serve import listening_message

    assert listening_message("127.0.0.1", 8000) == [
        "Open http://127.0.0.1:8000/ in a browser (Ctrl+C stops the server)."
    ]
    assert listening_message("::1", 8000)[0].startswith("Open http://[::1]:8000/")
    own = listening_message("10.1.2.3", 8000)
    assert own[0] == "From other devices on your network: http://10.1.2.3:8000/"
    assert own[1].startswith("Warning: with --host 10.1.2.3, anyone")
    everywhere = {4: ["192.168.1.20"], 6: ["fd00::2"]}
    monkeypatch.setattr(
        serve_command,
        "machine_addresses",
        lambda family: everywhere[6 if family == serve_command.socket.AF_INET6 else 4],
    )
    both = listening_message("::", 8000)
    assert both[0].startswith("Open http://[::1]:8000/ in a browser on this machine")
    assert both[1] == (
        "From other devices on your network: http://[fd00::2]:8000/, http://192.168.1.20:8000/"
    )
    monkeypatch.setattr(serve_command, "machine_addresses", lambda family: [])
    offline = listening_message("0.0.0.0", 8000)
    assert offline[1] == "This machine has no network address other devices could use right now."
    assert offline[2].startswith("Warning: with --host 0.0.0.0")


def test_machine_addresses_are_ones_others_can_reach():
    import socket

    from convnet.commands.serve import machine_addresses

    for address in machine_addresses(socket.AF_INET):
        parts = [int(part) for part in address.split(".")]
        assert len(parts) == 4 and parts[0] != 127 and parts[:2] != [169, 254]
