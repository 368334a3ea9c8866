"""The ROS log files our processes write stay in our own directory, pruned, each bounded (issue 26).

Real rcl: a child process calls `prepare()` and rclpy.init, logs, and its file appears in
<ROS_HOME>/log/schnitzel_stream; old files of ended processes there are pruned to KEEP_FILES; a
live file over its bound is copied to `.1` and truncated while the process keeps logging into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from schnitzel_stream_ros.runtime import ros_log_files

CHILD = textwrap.dedent(
    """
    import os, sys, rclpy, rclpy.logging
    from rclpy.context import Context
    from schnitzel_stream_ros.runtime import ros_log_files
    where = ros_log_files.prepare(watch=False)
    context = Context()
    rclpy.init(context=context)
    log = rclpy.logging.get_logger('bounded')
    for i in range(200):
        log.info('line %d %s' % (i, 'x' * 200))
    truncated = ros_log_files.bound_live_file(where, os.getpid(), max_bytes=10_000)
    log.info('after the truncation')
    rclpy.shutdown(context=context)
    print(where, os.getpid(), truncated, ros_log_files.counts()['pruned_files'])
    """
)


def test_a_process_logs_into_our_directory_old_files_are_pruned_the_live_file_bounded(tmp_path):
    own = tmp_path / 'log' / ros_log_files.OWN_SUBDIR
    own.mkdir(parents=True)
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    for i in range(ros_log_files.KEEP_FILES + 30):
        old = own / f'python_{dead_pid}_{1000 + i}.log'
        old.write_text('old\n')
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    env = {k: v for k, v in os.environ.items() if k != 'ROS_LOG_DIR'}
    env['ROS_HOME'] = str(tmp_path)
    done = subprocess.run([sys.executable, '-c', CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    where, pid, truncated, pruned = done.stdout.split()
    assert where == str(own) and truncated == 'True' and int(pruned) == 30
    [live] = [p for p in own.iterdir() if p.name.endswith('.log') and f'_{pid}_' in p.name]
    text = live.read_text()
    assert 'after the truncation' in text and 'line 0 ' not in text  # truncated, still written to
    copy = (own / (live.name + '.1')).read_text()
    assert copy.startswith('[INFO]') and 'line 0 ' in copy and 'line 150 ' in copy  # what was there
    assert live.stat().st_size < 10_000
    old_left = sorted(p.name for p in own.iterdir() if f'_{dead_pid}_' in p.name)
    assert len(old_left) == ros_log_files.KEEP_FILES
    assert old_left[0] == f'python_{dead_pid}_{1030}.log'  # the oldest went first
    assert not any((tmp_path / 'log').glob('python*.log'))  # nothing in the shared directory


def test_an_operator_set_log_dir_is_respected_and_not_pruned(tmp_path):
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    for i in range(ros_log_files.KEEP_FILES + 5):
        (theirs / f'python_{2**22 + 1}_{i}.log').write_text('x')
    env = {'ROS_LOG_DIR': str(theirs)}
    ros_log_files._prepared = False
    try:
        assert ros_log_files.prepare(env, watch=False) == theirs
    finally:
        ros_log_files._prepared = False
    assert env['ROS_LOG_DIR'] == str(theirs)
    assert len(list(theirs.iterdir())) == ros_log_files.KEEP_FILES + 5
