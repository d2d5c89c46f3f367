from cloudq.routing import Router


def test_explicit_queue_wins_over_everything():
    router = Router({"billing.*": "billing"}, "default")
    assert router.route("billing.charge", "own", explicit="urgent") == "urgent"


def test_task_queue_wins_over_rules():
    router = Router({"billing.*": "billing"}, "default")
    assert router.route("billing.charge", "own") == "own"


def test_first_matching_glob_rule_then_default():
    router = Router({"billing.*": "billing", "*.charge": "never"}, "default")
    assert router.route("billing.charge") == "billing"
    assert router.route("mail.send") == "default"


def test_glob_is_case_sensitive():
    assert Router({"Billing.*": "billing"}, "default").route("billing.x") == "default"


def test_queues_lists_default_first_without_duplicates():
    router = Router({"a.*": "qa", "b.*": "qa"}, "default")
    assert router.queues(["qb", None, "qa"]) == ["default", "qb", "qa"]
