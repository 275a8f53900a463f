import json
import os
import time
import boto3
WAIT_SECONDS = 120
ETCDCTL = 'set -e; c=$(crictl ps --name etcd -q | head -n1); crictl exec $c etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key '
ETCD_STATUS = ETCDCTL + 'member list -w json; ' + ETCDCTL + 'endpoint health --cluster -w json || true'

def quorum_safe(members, healthy_ids, target_id):
 rest = [m for m in members if m != target_id]
 healthy = [m for m in rest if m in healthy_ids]
 return len(rest) >= 1 and len(healthy) >= len(rest) // 2 + 1

def run(ssm, instance_ids, script, deadline):
 cmd = ssm.send_command(InstanceIds=instance_ids, DocumentName='AWS-RunShellScript', Parameters={'commands': [script]}, TimeoutSeconds=60)['Command']['CommandId']
 failed = {}
 while time.time() < deadline and len(failed) < len(instance_ids):
  time.sleep(2)
  for i in [i for i in instance_ids if i not in failed]:
   try:
    inv = ssm.get_command_invocation(CommandId=cmd, InstanceId=i)
   except ssm.exceptions.InvocationDoesNotExist:
    continue
   if inv['Status'] == 'Success':
    return (i, inv['StandardOutputContent'])
   if inv['Status'] not in ('Pending', 'InProgress', 'Delayed'):
    failed[i] = f"{inv['Status']}: {inv.get('StandardErrorContent', '')[:200]}"
 raise RuntimeError(f'SSM command {cmd} ' + (f'failed {failed}' if failed else 'timed out'))

def remove_member(ec2, asg, ssm, detail, deadline):
 target = detail['EC2InstanceId']
 res = ec2.describe_instances(Filters=[{'Name': 'instance-id', 'Values': [target]}])['Reservations']
 ips = [i.get('PrivateIpAddress') for r in res for i in r['Instances'] if i.get('PrivateIpAddress')]
 if not ips:
  return 'instance-gone'
 group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[detail['AutoScalingGroupName']])
 peers = [i['InstanceId'] for g in group['AutoScalingGroups'] for i in g['Instances'] if i['InstanceId'] != target and i['LifecycleState'] == 'InService' and (i['HealthStatus'] == 'Healthy')]
 if not peers:
  return 'no-healthy-peer'
 try:
  peer, out = run(ssm, peers, ETCD_STATUS, deadline)
 except RuntimeError as exc:
  return f'no-peer-answered ({exc})'
 docs = [json.loads(line) for line in out.splitlines() if line.strip()[:1] in '[{']
 members = docs[0]['members'] if docs else []
 health = docs[1] if len(docs) > 1 else []
 urls = {m['ID']: m.get('peerURLs', []) + m.get('clientURLs', []) for m in members}
 found = [m for m, u in urls.items() if any((f'//{ips[0]}:' in x for x in u))]
 if not found:
  return 'already-removed'
 healthy = {m for m, u in urls.items() if any((h.get('health') and h.get('endpoint') in u for h in health))}
 if not quorum_safe(list(urls), healthy, found[0]):
  return 'quorum-would-be-lost'
 run(ssm, [peer], ETCDCTL + f'member remove {found[0]:x}', deadline)
 return 'removed'

def handler(event, context, clients=None):
 ec2, asg, ssm = clients or (boto3.client('ec2'), boto3.client('autoscaling'), boto3.client('ssm'))
 detail = event['detail']
 left = context.get_remaining_time_in_millis() / 1000.0 - 20 if context else WAIT_SECONDS
 deadline = time.time() + max(5, min(int(os.environ.get('WAIT_SECONDS', WAIT_SECONDS)), left))
 result = 'error'
 try:
  result = remove_member(ec2, asg, ssm, detail, deadline)
 except Exception as exc:
  result = f'error: {exc}'
 finally:
  try:
   asg.complete_lifecycle_action(LifecycleHookName=detail['LifecycleHookName'], AutoScalingGroupName=detail['AutoScalingGroupName'], LifecycleActionToken=detail['LifecycleActionToken'], LifecycleActionResult='CONTINUE', InstanceId=detail['EC2InstanceId'])
  except asg.exceptions.ClientError as exc:
   if 'No active Lifecycle Action' not in str(exc):
    result += f'; complete failed: {exc}'
 print(json.dumps({'instance': detail['EC2InstanceId'], 'result': result}))
 return {'instance': detail['EC2InstanceId'], 'result': result}
