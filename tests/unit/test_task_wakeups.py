"""Which long-polling schedule calls a change of a task wakes (no threads: a
waiter here is only registered, and `woken` is what a waiting thread would see)."""
from dfly.supernode.scheduler import SUPERNODE, SchedulerConfig
from dfly.supernode.task import BATON_MISSES, Baton, Task

T0 = 1000.0


def task_with(peers, on_supernode=(), **config) -> Task:
    task = Task("0" * 64, "http://origin/f", {}, None, "/nonexistent", SchedulerConfig(**config))
    task.clock = lambda: T0
    for num in on_supernode:
        task.scheduler.piece_available(num)
    for i, peer_id in enumerate(peers):
        task.scheduler.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000), T0)
    return task


def woken(waiters):
    return [w.peer_id for w in waiters if w.woken]


def test_a_new_piece_wakes_one_waiter_that_lacks_it_and_hands_it_a_baton():
    task = task_with(["a", "b", "c"])
    task.scheduler.piece_done("a", 0, T0)
    waiters = [task.add_waiter(p, 2) for p in ("a", "b", "c")]

    with task.cond:
        task.offered({0})

    assert woken(waiters) == ["b"]   # a holds it already; c is behind b
    assert waiters[1].baton is not None and waiters[1].baton.pieces == frozenset({0})
    assert waiters[1].woken_at == T0


def test_a_waiter_already_woken_is_skipped_so_each_change_reaches_someone_new():
    task = task_with(["a", "b"])
    waiters = [task.add_waiter(p, 1) for p in ("a", "b")]

    with task.cond:
        task.offered({0})
    with task.cond:
        task.offered({1})

    assert woken(waiters) == ["a", "b"]


def test_a_piece_in_flight_to_a_waiter_does_not_concern_it():
    task = task_with(["a", "b"], on_supernode=[0])
    assert task.scheduler.assign("a", 1, T0)[0].holder == SUPERNODE
    waiters = [task.add_waiter(p, 1) for p in ("a", "b")]

    with task.cond:
        task.offered({0})

    assert woken(waiters) == ["b"]


def test_a_call_that_wants_nothing_is_not_handed_a_baton():
    task = task_with(["a", "b"])
    waiters = [task.add_waiter("a", 0), task.add_waiter("b", 1)]

    with task.cond:
        task.offered(None)

    assert woken(waiters) == ["b"]


def test_no_waiter_lacking_the_piece_wakes_no_one():
    task = task_with(["a"])
    task.scheduler.piece_done("a", 0, T0)
    waiter = task.add_waiter("a", 1)

    with task.cond:
        task.offered({0})

    assert not waiter.woken


def test_a_change_of_the_whole_task_wakes_every_waiter():
    task = task_with(["a", "b", "c"])
    waiters = [task.add_waiter(p, 1 if p != "c" else 0) for p in ("a", "b", "c")]

    with task.cond:
        task.fail("SourceError", "origin answered 500", T0)

    assert woken(waiters) == ["a", "b", "c"]
    assert all(w.baton is None for w in waiters)


def test_a_peer_leaving_wakes_its_own_call_only():
    task = task_with(["a", "b"])
    waiters = [task.add_waiter(p, 1) for p in ("a", "b")]

    with task.cond:
        task.wake_peers(["b"])

    assert woken(waiters) == ["b"]


def test_a_waiter_that_waits_again_goes_to_the_back_of_the_queue():
    task = task_with(["a", "b"])
    first, second = task.add_waiter("a", 1), task.add_waiter("b", 1)
    with task.cond:
        task.offered({0})
    assert woken([first, second]) == ["a"]

    with task.cond:
        task.wait(first, 0)   # it got nothing and waits again (here: not at all)
    with task.cond:
        task.offered({0})

    assert woken([first, second]) == ["b"]


def test_a_call_that_ended_is_never_woken():
    task = task_with(["a", "b"])
    first, second = task.add_waiter("a", 1), task.add_waiter("b", 1)
    with task.cond:
        task.stop_waiting(first)

    with task.cond:
        task.pass_baton(Baton(None))

    assert woken([first, second]) == ["b"]
    assert task.summary()["waiting"] == 1


def chain(task: Task, waiters, served) -> list:
    """Run the baton from the first woken waiter: each woken one tries (served or
    not, as `served` says for it) and hands on; the order they were woken in."""
    order = []
    with task.cond:
        while True:
            nxt = [w for w in waiters if w.woken and w.baton is not None]
            if not nxt:
                return order
            waiter = nxt[0]
            order.append(waiter.peer_id)
            task.tried(waiter, served[waiter.peer_id])


def test_a_served_waiter_passes_the_baton_on_so_one_change_serves_many():
    task = task_with(["b", "c", "d"])
    waiters = [task.add_waiter(p, 1) for p in ("b", "c", "d")]
    with task.cond:
        task.offered({0})

    assert chain(task, waiters, {"b": True, "c": True, "d": True}) == ["b", "c", "d"]


def test_a_miss_passes_the_baton_once_more_and_a_success_renews_that_allowance():
    task = task_with(["b", "c", "d", "e"])
    waiters = [task.add_waiter(p, 1) for p in ("b", "c", "d", "e")]
    with task.cond:
        task.offered({0})

    assert chain(task, waiters, {"b": True, "c": False, "d": True, "e": False}) == \
        ["b", "c", "d", "e"]


def test_two_misses_in_a_row_end_the_chain_the_change_being_used_up():
    task = task_with(["b", "c", "d", "e"])
    waiters = [task.add_waiter(p, 1) for p in ("b", "c", "d", "e")]
    with task.cond:
        task.offered({0})

    assert chain(task, waiters, {"b": True, "c": False, "d": False, "e": True}) == ["b", "c", "d"]
    assert not waiters[3].woken   # its long-poll's deadline, or the next change, comes for it


def test_a_call_ending_before_it_tried_its_baton_hands_it_on_untouched():
    task = task_with(["b", "c"])
    first, second = task.add_waiter("b", 1), task.add_waiter("c", 1)
    with task.cond:
        task.offered({0})
        task.stop_waiting(first)   # say it was forgotten meanwhile

    assert second.woken and second.baton is not None and second.baton.misses == BATON_MISSES
